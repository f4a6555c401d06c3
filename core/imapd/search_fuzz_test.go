package imapd

import (
	"bufio"
	"bytes"
	"testing"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// FuzzSearchPrefilter holds the header prefilter of SEARCH to what it
// claims: where it rules a value out of a header's raw bytes, no field of
// the parsed header, decoded as SEARCH compares it, contains the value.
func FuzzSearchPrefilter(f *testing.F) {
	f.Add([]byte("Subject: Hello\r\n World\r\n\r\n"), "Subject", "WORLD")
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: a@b\r\n\r\n"), "subject", "café")
	f.Add([]byte("X-Note: \xc3\r\n \xa9 \xe2\x84\xaa\r\n\r\n"), "x-note", "k")
	f.Fuzz(func(t *testing.T, raw []byte, key, value string) {
		if !prefilterable(value) || !headerLacks(raw, bytes.ToLower(raw), value) {
			return
		}
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		mh := gomessage.Header{Header: h}
		if matchFields(mh.FieldsByKey(key), value) {
			t.Fatalf("prefilter ruled out %q, but field %q of %q contains it", value, key, raw)
		}
	})
}
