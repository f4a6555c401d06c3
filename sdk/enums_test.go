package sdk

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// declaredConsts returns the names of the constants of each named type
// declared in this package's source, implicit repetitions in const blocks
// included.
func declaredConsts(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			typ := ""
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				switch {
				case vs.Type != nil:
					typ = ""
					if id, ok := vs.Type.(*ast.Ident); ok {
						typ = id.Name
					}
				case len(vs.Values) > 0:
					typ = "" // Untyped.
				}
				for _, n := range vs.Names {
					if typ != "" {
						out[typ] = append(out[typ], n.Name)
					}
				}
			}
		}
	}
	return out
}

// checkWire checks one enum's table against the Go constants (by name, as
// declared) and the protobuf values (as generated): both lists must be
// covered exactly, _UNSPECIFIED aside, and unknown values refused.
func checkWire[G comparable, P wireEnum](t *testing.T, declared map[string][]string, goType string, goValues map[string]G, wire wireMap[G, P], pbNames map[int32]string) {
	t.Helper()
	if got, want := slices.Sorted(slices.Values(declared[goType])), slices.Sorted(maps.Keys(goValues)); !slices.Equal(got, want) {
		t.Errorf("%s: declared constants %v, test table %v: add the new one here and to its wire map", goType, got, want)
	}
	for name, g := range goValues {
		if _, err := wire.toWire(g); err != nil {
			t.Errorf("%s %s: %v", goType, name, err)
		}
	}
	seen := map[P]bool{}
	for _, p := range wire {
		if seen[p] {
			t.Errorf("%s: %v mapped twice", goType, p)
		}
		seen[p] = true
	}
	for n, name := range pbNames {
		p := P(n)
		_, err := wire.fromWire(p)
		if strings.HasSuffix(name, "_UNSPECIFIED") {
			if err == nil {
				t.Errorf("%s: %s accepted", goType, name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: protobuf %s has no Go value: %v", goType, name, err)
		}
	}
	if _, err := wire.fromWire(P(1000)); err == nil {
		t.Errorf("%s: unknown wire value 1000 accepted", goType)
	}
}

func TestEnumWire(t *testing.T) {
	d := declaredConsts(t)
	checkWire(t, d, "Kind", map[string]Kind{"KindTransport": KindTransport, "KindMechanism": KindMechanism, "KindPolicy": KindPolicy, "KindPlugin": KindPlugin}, kindWire, pb.Kind_name)
	checkWire(t, d, "Stage", map[string]Stage{"StageConnect": StageConnect, "StageHelo": StageHelo, "StageMail": StageMail, "StageRcpt": StageRcpt, "StageData": StageData}, stageWire, pb.Stage_name)
	checkWire(t, d, "BodyNeed", map[string]BodyNeed{"BodyNone": BodyNone, "BodyHeaders": BodyHeaders, "BodyFull": BodyFull}, bodyWire, pb.BodyNeed_name)
	checkWire(t, d, "Action", map[string]Action{"ActionContinue": ActionContinue, "ActionAccept": ActionAccept, "ActionReject": ActionReject, "ActionTempfail": ActionTempfail, "ActionDiscard": ActionDiscard, "ActionQuarantine": ActionQuarantine}, actionWire, pb.Action_name)
	checkWire(t, d, "Verification", map[string]Verification{"VerifyNone": VerifyNone, "VerifyOpportunistic": VerifyOpportunistic, "VerifyPKIX": VerifyPKIX, "VerifyMTASTS": VerifyMTASTS, "VerifyDANE": VerifyDANE}, verificationWire, pb.TLSUse_Verification_name)
	checkWire(t, d, "Status", map[string]Status{"StatusTemporary": StatusTemporary, "StatusDelivered": StatusDelivered, "StatusPermanent": StatusPermanent}, statusWire, pb.Status_name)

	// The zero Kind is no kind: a Configuration must say what it is for.
	if _, err := kindWire.toWire(0); err == nil {
		t.Error("the zero Kind crosses the wire")
	}
}
