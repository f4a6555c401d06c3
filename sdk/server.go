package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// The plugin side: gRPC servers that call the Plugin's implementations.

func registerServers(s *grpc.Server, impl *Plugin, broker *plugin.GRPCBroker) {
	pb.RegisterPluginServer(s, &pluginServer{impl: impl, broker: broker, hosts: map[uint32]Host{}})
	if impl.Transport != nil {
		pb.RegisterTransportServer(s, &transportServer{impl: impl.Transport})
	}
	if impl.Mechanism != nil {
		pb.RegisterMechanismServer(s, &mechanismServer{impl: impl.Mechanism})
	}
	if impl.Checker != nil {
		pb.RegisterPolicyServer(s, &policyServer{impl: impl.Checker})
	}
}

type pluginServer struct {
	pb.UnimplementedPluginServer
	impl   *Plugin
	broker *plugin.GRPCBroker

	mu    sync.Mutex
	hosts map[uint32]Host // By broker id; the core serves one per process.
}

func (s *pluginServer) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	policy, err := policyToProto(s.impl.Policy)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "plugin %s: policy: %v", s.impl.Name, err)
	}
	return &pb.DescribeResponse{
		Name:       s.impl.Name,
		Version:    s.impl.Version,
		Transport:  s.impl.Transport != nil,
		Mechanisms: s.impl.Mechanisms,
		Policy:     policy,
	}, nil
}

func (s *pluginServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	kind, err := kindWire.fromWire(req.GetKind())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	c := &Configuration{
		Kind:      kind,
		Instance:  req.GetInstance(),
		KeyPath:   req.GetKeyPath(),
		Table:     tableFromProto(req.GetConfig()),
		CheckOnly: req.GetCheckOnly(),
		Hostname:  req.GetHostname(),
		ConfigDir: req.GetConfigDir(),
		DataDir:   req.GetDataDir(),
	}
	if !c.CheckOnly && req.GetHostBrokerId() != 0 {
		h, err := s.host(req.GetHostBrokerId())
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "connecting to host service: %v", err)
		}
		c.Host = h
	}
	var impl any
	switch c.Kind {
	case KindTransport:
		impl = s.impl.Transport
	case KindMechanism:
		impl = s.impl.Mechanism
	case KindPolicy:
		impl = s.impl.Checker
	case KindPlugin:
		impl = s.impl.Configurer
	}
	if impl == nil && c.Kind != KindPlugin {
		return configErrors(ConfigErrors{{Msg: fmt.Sprintf("plugin %s does not serve this kind", s.impl.Name)}}), nil
	}
	cf, ok := impl.(Configurer)
	if !ok {
		if len(c.Table) > 0 {
			return configErrors(ConfigErrors{{Msg: fmt.Sprintf("plugin %s takes no configuration here", s.impl.Name)}}), nil
		}
		return &pb.ConfigureResponse{}, nil
	}
	if err := cf.Configure(ctx, c); err != nil {
		var ces ConfigErrors
		var ce ConfigError
		switch {
		case errors.As(err, &ces):
		case errors.As(err, &ce):
			ces = ConfigErrors{ce}
		default:
			ces = ConfigErrors{{Msg: err.Error()}}
		}
		return configErrors(ces), nil
	}
	return &pb.ConfigureResponse{}, nil
}

func configErrors(es ConfigErrors) *pb.ConfigureResponse {
	resp := &pb.ConfigureResponse{}
	for _, e := range es {
		resp.Errors = append(resp.Errors, &pb.ConfigError{Key: e.Key, Message: e.Msg})
	}
	return resp
}

func (s *pluginServer) host(id uint32) (Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.hosts[id]; ok {
		return h, nil
	}
	conn, err := s.broker.Dial(id)
	if err != nil {
		return nil, err
	}
	h := &hostClient{rpc: pb.NewHostClient(conn)}
	s.hosts[id] = h
	return h, nil
}

type transportServer struct {
	pb.UnimplementedTransportServer
	impl Transport
}

func (s *transportServer) Deliver(stream pb.Transport_DeliverServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetRequest() == nil {
		return status.Error(codes.InvalidArgument, "first part carries no request")
	}
	req := deliverRequestFromProto(first.GetRequest())
	body := &partReader{buf: first.GetData(), next: func() ([]byte, error) {
		p, err := stream.Recv()
		return p.GetData(), err
	}}
	req.Message = body
	res, err := s.impl.Deliver(stream.Context(), req)
	if err != nil {
		// Unknown, not Unavailable: the core reads Unavailable as the
		// plugin process gone, not as the plugin failing the attempt.
		return status.Error(codes.Unknown, err.Error())
	}
	if res == nil {
		return status.Error(codes.Internal, "transport returned neither a result nor an error")
	}
	if len(res.Recipients) != len(req.Recipients) {
		return status.Errorf(codes.Internal, "transport returned %d results for %d recipients", len(res.Recipients), len(req.Recipients))
	}
	p, err := deliverResultToProto(res)
	if err != nil {
		return status.Errorf(codes.Internal, "transport result: %v", err)
	}
	body.drain()
	return stream.SendAndClose(p)
}

type mechanismServer struct {
	pb.UnimplementedMechanismServer
	impl Mechanism
}

func (s *mechanismServer) Authenticate(stream pb.Mechanism_AuthenticateServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "first message carries no start")
	}
	ex, err := s.impl.Start(ctx, start.GetMechanism(), connFromProto(start.GetConn()))
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	var resp []byte
	if start.GetHasInitialResponse() {
		resp = start.GetInitialResponse()
		if resp == nil {
			resp = []byte{}
		}
	}
	for {
		challenge, outcome, err := ex.Next(ctx, resp)
		if err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		if outcome != nil {
			return stream.Send(&pb.AuthServerMessage{Outcome: outcomeToProto(outcome)})
		}
		if challenge == nil {
			challenge = []byte{}
		}
		if err := stream.Send(&pb.AuthServerMessage{Challenge: challenge}); err != nil {
			return err
		}
		m, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if m.GetAbort() {
			return stream.Send(&pb.AuthServerMessage{Outcome: &pb.AuthOutcome{Reason: "client cancelled"}})
		}
		resp = m.GetResponse()
		if resp == nil {
			resp = []byte{}
		}
	}
}

func (s *mechanismServer) Derive(ctx context.Context, req *pb.DeriveRequest) (*pb.DeriveResponse, error) {
	d, ok := s.impl.(Deriver)
	if !ok {
		return &pb.DeriveResponse{}, nil
	}
	secrets, err := d.Derive(ctx, req.GetAccount(), req.GetPassword())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &pb.DeriveResponse{Secrets: secrets}, nil
}

func (s *mechanismServer) PreAuth(ctx context.Context, req *pb.PreAuthRequest) (*pb.AuthOutcome, error) {
	p, ok := s.impl.(PreAuther)
	if !ok {
		return &pb.AuthOutcome{Reason: "mechanism does not pre-authenticate"}, nil
	}
	o, err := p.PreAuth(ctx, connFromProto(req.GetConn()))
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return outcomeToProto(o), nil
}

type policyServer struct {
	pb.UnimplementedPolicyServer
	impl Checker
}

func (s *policyServer) Check(stream pb.Policy_CheckServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetRequest() == nil {
		return status.Error(codes.InvalidArgument, "first part carries no request")
	}
	req, err := checkRequestFromProto(first.GetRequest())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var body *partReader
	if req.Stage == StageData {
		body = &partReader{buf: first.GetData(), next: func() ([]byte, error) {
			p, err := stream.Recv()
			return p.GetData(), err
		}}
		req.Message = body
	}
	v, err := s.impl.Check(stream.Context(), req)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if body != nil {
		body.drain()
	}
	p, err := verdictToProto(v)
	if err != nil {
		return status.Errorf(codes.Internal, "verdict: %v", err)
	}
	return stream.SendAndClose(p)
}

// hostClient is the plugin's view of the core's Host service.
type hostClient struct {
	rpc pb.HostClient
}

func (h *hostClient) Secret(ctx context.Context, username, mechanism string) (*Credential, error) {
	resp, err := h.rpc.Secret(ctx, &pb.SecretRequest{Username: username, Mechanism: mechanism})
	if err != nil {
		return nil, fmt.Errorf("host secret lookup: %w", err)
	}
	if !resp.GetFound() {
		return nil, ErrNotFound
	}
	return &Credential{Account: resp.GetAccount(), Login: resp.GetLogin(), Secret: resp.GetSecret()}, nil
}

func (h *hostClient) TLSPublicKey(ctx context.Context, spki []byte) (*TLSKey, error) {
	resp, err := h.rpc.TLSPublicKey(ctx, &pb.TLSPublicKeyRequest{SpkiSha256: spki})
	if err != nil {
		return nil, fmt.Errorf("host public key lookup: %w", err)
	}
	if !resp.GetFound() {
		return nil, ErrNotFound
	}
	return &TLSKey{Account: resp.GetAccount(), Login: resp.GetLogin(), Name: resp.GetName(), Addresses: resp.GetAddresses(), NoIMAPPreauth: resp.GetNoImapPreauth()}, nil
}
