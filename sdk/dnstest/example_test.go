package dnstest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
	"github.com/switchyard-mta/switchyard/sdk/dnstest"
)

// A signed zone and an unsigned one, asked through sdk/dnsresolve.
func Example() {
	t := &exampleTB{} // In a test, its *testing.T.
	s := dnstest.NewServer(t,
		dnstest.Zone{Origin: "example.org.", Signed: true, Records: `
			@  MX 10 mx
			mx A  127.0.0.1
		`},
		dnstest.Zone{Origin: "example.net.", Records: "@ MX 10 mx.example.org.\n"},
	)
	defer t.cleanup()
	r, err := dnsresolve.New(s.Addr, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, domain := range []string{"example.org", "example.net"} {
		mxs, res, err := r.LookupMX(context.Background(), domain)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(domain, mxs[0].Host, "authentic:", res.Authentic)
	}
	// Output:
	// example.org mx.example.org authentic: true
	// example.net mx.example.org authentic: false
}

// exampleTB stands in for a test's *testing.T in examples.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (e *exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

func (e *exampleTB) cleanup() {
	for _, f := range slices.Backward(e.cleanups) {
		f()
	}
}
