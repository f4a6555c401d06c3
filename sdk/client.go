package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// client is the core's side of one plugin process, exposed as
// hostrpc.Client.
type client struct {
	conn   *grpc.ClientConn
	broker *plugin.GRPCBroker
	plugin pb.PluginClient
	hostID uint32 // Broker id of the Host service; 0 until ServeHost.
}

func newClient(conn *grpc.ClientConn, broker *plugin.GRPCBroker) *client {
	return &client{conn: conn, broker: broker, plugin: pb.NewPluginClient(conn)}
}

// Describe asks the plugin what it serves.
func (c *client) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.plugin.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	policy, err := policyFromProto(resp.GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("describe: policy: %w", err)
	}
	return &Description{
		Name:       resp.GetName(),
		Version:    resp.GetVersion(),
		Transport:  resp.GetTransport(),
		Mechanisms: resp.GetMechanisms(),
		Policy:     policy,
	}, nil
}

// ServeHost serves h to the plugin over the go-plugin broker. Call it once,
// before Configure; Configure passes the plugin its broker id.
func (c *client) ServeHost(h Host) {
	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		pb.RegisterHostServer(s, &hostServer{impl: h})
		return s
	})
	c.hostID = id
}

// Configure sends one instance's configuration. A rejection is returned as
// ConfigErrors with keys relative to cfg.KeyPath; cfg.Host is ignored (see
// ServeHost).
func (c *client) Configure(ctx context.Context, cfg *Configuration) error {
	table, err := tableToProto(cfg.Table)
	if err != nil {
		return ConfigErrors{{Msg: err.Error()}} // The key is in the message: "a.b: unsupported value type".
	}
	kind, err := kindWire.toWire(cfg.Kind)
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	resp, err := c.plugin.Configure(ctx, &pb.ConfigureRequest{
		Kind:         kind,
		Instance:     cfg.Instance,
		KeyPath:      cfg.KeyPath,
		Config:       table,
		CheckOnly:    cfg.CheckOnly,
		Hostname:     cfg.Hostname,
		ConfigDir:    cfg.ConfigDir,
		DataDir:      cfg.DataDir,
		HostBrokerId: c.hostID,
	})
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if len(resp.GetErrors()) == 0 {
		return nil
	}
	var es ConfigErrors
	for _, e := range resp.GetErrors() {
		es = append(es, ConfigError{Key: e.GetKey(), Msg: e.GetMessage()})
	}
	return es
}

// Transport returns the plugin's transport.
func (c *client) Transport() Transport { return &transportClient{rpc: pb.NewTransportClient(c.conn)} }

// Mechanism returns the plugin's mechanisms; the value also implements
// Deriver and PreAuther.
func (c *client) Mechanism() Mechanism { return &mechanismClient{rpc: pb.NewMechanismClient(c.conn)} }

// Checker returns the plugin's policy checker.
func (c *client) Checker() Checker { return &checkerClient{rpc: pb.NewPolicyClient(c.conn)} }

type transportClient struct{ rpc pb.TransportClient }

var _ Transport = (*transportClient)(nil)

func (t *transportClient) Deliver(ctx context.Context, req *DeliverRequest) (*DeliverResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // Ends the stream if we return early.
	stream, err := t.rpc.Deliver(ctx)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	header := deliverRequestToProto(req)
	msg := req.Message
	if msg == nil {
		msg = eofReader{}
	}
	err = sendMessage(msg, func(data []byte, first bool) error {
		part := &pb.DeliverPart{Data: data}
		if first {
			part.Request = header
		}
		return stream.Send(part)
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("deliver: sending message: %w", err)
	}
	// On io.EOF from Send, the server ended the stream; CloseAndRecv says why.
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	res, err := deliverResultFromProto(resp)
	if err != nil {
		return nil, fmt.Errorf("deliver: result: %w", err)
	}
	if len(res.Recipients) != len(req.Recipients) {
		return nil, fmt.Errorf("deliver: %d results for %d recipients", len(res.Recipients), len(req.Recipients))
	}
	return res, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type mechanismClient struct{ rpc pb.MechanismClient }

var (
	_ Mechanism = (*mechanismClient)(nil)
	_ Deriver   = (*mechanismClient)(nil)
	_ PreAuther = (*mechanismClient)(nil)
)

func (m *mechanismClient) Start(ctx context.Context, mech string, conn ConnInfo) (Exchange, error) {
	stream, err := m.rpc.Authenticate(ctx)
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	return &exchangeClient{stream: stream, start: &pb.AuthStart{Mechanism: mech, Conn: connToProto(conn)}}, nil
}

type exchangeClient struct {
	stream pb.Mechanism_AuthenticateClient
	start  *pb.AuthStart // Sent with the first response.
}

func (e *exchangeClient) Next(ctx context.Context, response []byte) ([]byte, *AuthOutcome, error) {
	m := &pb.AuthClientMessage{Response: response}
	if e.start != nil {
		e.start.InitialResponse = response
		e.start.HasInitialResponse = response != nil
		m = &pb.AuthClientMessage{Start: e.start}
		e.start = nil
	}
	if err := e.stream.Send(m); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("authenticate: %w", err)
	}
	resp, err := e.stream.Recv()
	if err != nil {
		return nil, nil, fmt.Errorf("authenticate: %w", err)
	}
	if o := resp.GetOutcome(); o != nil {
		e.stream.CloseSend()
		return nil, outcomeFromProto(o), nil
	}
	c := resp.GetChallenge()
	if c == nil {
		c = []byte{}
	}
	return c, nil, nil
}

func (m *mechanismClient) Derive(ctx context.Context, account, password string) (map[string][]byte, error) {
	resp, err := m.rpc.Derive(ctx, &pb.DeriveRequest{Account: account, Password: password})
	if err != nil {
		return nil, fmt.Errorf("derive: %w", err)
	}
	return resp.GetSecrets(), nil
}

func (m *mechanismClient) PreAuth(ctx context.Context, conn ConnInfo) (*AuthOutcome, error) {
	resp, err := m.rpc.PreAuth(ctx, &pb.PreAuthRequest{Conn: connToProto(conn)})
	if status.Code(err) == codes.Unimplemented {
		// A plugin not built on this sdk that serves no PreAuth: as this
		// sdk's server answers for a Mechanism without PreAuther.
		return &AuthOutcome{Reason: "mechanism does not pre-authenticate"}, nil
	} else if err != nil {
		return nil, fmt.Errorf("preauth: %w", err)
	}
	return outcomeFromProto(resp), nil
}

type checkerClient struct{ rpc pb.PolicyClient }

var _ Checker = (*checkerClient)(nil)

func (c *checkerClient) Check(ctx context.Context, req *CheckRequest) (Verdict, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Check(ctx)
	if err != nil {
		return Verdict{}, fmt.Errorf("check: %w", err)
	}
	header, err := checkRequestToProto(req)
	if err != nil {
		return Verdict{}, fmt.Errorf("check: %w", err)
	}
	msg := req.Message
	if msg == nil || req.Stage != StageData {
		msg = eofReader{}
	}
	err = sendMessage(msg, func(data []byte, first bool) error {
		part := &pb.CheckPart{Data: data}
		if first {
			part.Request = header
		}
		return stream.Send(part)
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return Verdict{}, fmt.Errorf("check: sending message: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return Verdict{}, fmt.Errorf("check: %w", err)
	}
	v, err := verdictFromProto(resp)
	if err != nil {
		return Verdict{}, fmt.Errorf("check: verdict: %w", err)
	}
	return v, nil
}

// hostServer serves the core's Host to a plugin.
type hostServer struct {
	pb.UnimplementedHostServer
	impl Host
}

func (h *hostServer) Secret(ctx context.Context, req *pb.SecretRequest) (*pb.SecretResponse, error) {
	c, err := h.impl.Secret(ctx, req.GetUsername(), req.GetMechanism())
	if errors.Is(err, ErrNotFound) {
		return &pb.SecretResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	return &pb.SecretResponse{Found: true, Account: c.Account, Login: c.Login, Secret: c.Secret}, nil
}

func (h *hostServer) TLSPublicKey(ctx context.Context, req *pb.TLSPublicKeyRequest) (*pb.TLSPublicKeyResponse, error) {
	k, err := h.impl.TLSPublicKey(ctx, req.GetSpkiSha256())
	if errors.Is(err, ErrNotFound) {
		return &pb.TLSPublicKeyResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	return &pb.TLSPublicKeyResponse{Found: true, Account: k.Account, Login: k.Login, Name: k.Name, Addresses: k.Addresses, NoImapPreauth: k.NoIMAPPreauth}, nil
}
