package sdk

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// A plugin of another language serving a mechanism but not PreAuth does
// not pre-authenticate: a plain no, not a temporary failure that would
// hold up every session with a client certificate.
func TestPreAuthUnimplemented(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterMechanismServer(s, pb.UnimplementedMechanismServer{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &mechanismClient{rpc: pb.NewMechanismClient(conn)}
	o, err := m.PreAuth(t.Context(), ConnInfo{Protocol: "imap"})
	if err != nil || o == nil || o.Success || o.Temporary {
		t.Fatalf("PreAuth of a plugin without it: %+v, %v; want a plain failure", o, err)
	}
}
