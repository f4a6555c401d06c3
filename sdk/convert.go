package sdk

import (
	"crypto/x509"
	"fmt"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// Conversions between the Go types of this package and their wire form.

func deliverRequestToProto(r *DeliverRequest) *pb.DeliverRequest {
	p := &pb.DeliverRequest{
		Instance: r.Instance,
		QueueId:  r.QueueID,
		Attempt:  int32(r.Attempt),
		MailFrom: r.From,
		Options: &pb.DeliverOptions{
			Smtputf8:   r.Options.SMTPUTF8,
			Body:       r.Options.Body,
			RequireTls: r.Options.RequireTLS,
			EnvelopeId: r.Options.EnvelopeID,
			DsnRet:     r.Options.DSNReturn,
		},
		Size: r.Size,
	}
	for _, rc := range r.Recipients {
		p.Recipients = append(p.Recipients, &pb.Recipient{Address: rc.Address, Notify: rc.Notify, Orcpt: rc.ORcpt})
	}
	return p
}

func deliverRequestFromProto(p *pb.DeliverRequest) *DeliverRequest {
	o := p.GetOptions()
	r := &DeliverRequest{
		Instance: p.GetInstance(),
		QueueID:  p.GetQueueId(),
		Attempt:  int(p.GetAttempt()),
		From:     p.GetMailFrom(),
		Options: DeliverOptions{
			SMTPUTF8:   o.GetSmtputf8(),
			Body:       o.GetBody(),
			RequireTLS: o.GetRequireTls(),
			EnvelopeID: o.GetEnvelopeId(),
			DSNReturn:  o.GetDsnRet(),
		},
		Size: p.GetSize(),
	}
	for _, rc := range p.GetRecipients() {
		r.Recipients = append(r.Recipients, Recipient{Address: rc.GetAddress(), Notify: rc.GetNotify(), ORcpt: rc.GetOrcpt()})
	}
	return r
}

func deliverResultToProto(r *DeliverResult) (*pb.DeliverResult, error) {
	p := &pb.DeliverResult{}
	for _, rr := range r.Recipients {
		st, err := statusWire.toWire(rr.Status)
		if err != nil {
			return nil, fmt.Errorf("recipient %s: %w", rr.Address, err)
		}
		v, err := verificationWire.toWire(rr.TLS.Verification)
		if err != nil {
			return nil, fmt.Errorf("recipient %s: %w", rr.Address, err)
		}
		var stage pb.Stage // Unspecified: no reply decided it.
		if rr.Stage != 0 {
			if stage, err = stageWire.toWire(rr.Stage); err != nil {
				return nil, fmt.Errorf("recipient %s: %w", rr.Address, err)
			}
		}
		p.Recipients = append(p.Recipients, &pb.RecipientResult{
			Address:      rr.Address,
			Status:       st,
			Code:         int32(rr.Code),
			EnhancedCode: rr.EnhancedCode,
			Text:         rr.Text,
			RemoteHost:   rr.RemoteHost,
			RemoteIp:     rr.RemoteIP,
			Tls:          &pb.TLSUse{Verification: v, Version: rr.TLS.Version, Cipher: rr.TLS.Cipher},
			Stage:        stage,
		})
	}
	return p, nil
}

func deliverResultFromProto(p *pb.DeliverResult) (*DeliverResult, error) {
	r := &DeliverResult{}
	for _, rr := range p.GetRecipients() {
		st, err := statusWire.fromWire(rr.GetStatus())
		if err != nil {
			return nil, fmt.Errorf("recipient %s: %w", rr.GetAddress(), err)
		}
		v, err := verificationWire.fromWire(rr.GetTls().GetVerification())
		if err != nil {
			return nil, fmt.Errorf("recipient %s: %w", rr.GetAddress(), err)
		}
		var stage Stage
		if rr.GetStage() != pb.Stage_STAGE_UNSPECIFIED {
			if stage, err = stageWire.fromWire(rr.GetStage()); err != nil {
				return nil, fmt.Errorf("recipient %s: %w", rr.GetAddress(), err)
			}
		}
		r.Recipients = append(r.Recipients, RecipientResult{
			Address:      rr.GetAddress(),
			Status:       st,
			Code:         int(rr.GetCode()),
			EnhancedCode: rr.GetEnhancedCode(),
			Text:         rr.GetText(),
			RemoteHost:   rr.GetRemoteHost(),
			RemoteIP:     rr.GetRemoteIp(),
			TLS:          TLSUse{Verification: v, Version: rr.GetTls().GetVersion(), Cipher: rr.GetTls().GetCipher()},
			Stage:        stage,
		})
	}
	return r, nil
}

func connToProto(c ConnInfo) *pb.ConnInfo {
	p := &pb.ConnInfo{Protocol: c.Protocol, Listener: c.Listener, LocalAddr: c.LocalAddr, RemoteAddr: c.RemoteAddr, OfferedMechanisms: c.Offered}
	if t := c.TLS; t != nil {
		p.Tls = &pb.TLSInfo{
			Version:           uint32(t.Version),
			ServerName:        t.ServerName,
			TlsExporter:       t.Exporter,
			TlsUnique:         t.Unique,
			TlsServerEndPoint: t.ServerEndPoint,
		}
		for _, c := range t.PeerCertificates {
			p.Tls.PeerCertificates = append(p.Tls.PeerCertificates, c.Raw)
		}
	}
	return p
}

func connFromProto(p *pb.ConnInfo) ConnInfo {
	c := ConnInfo{Protocol: p.GetProtocol(), Listener: p.GetListener(), LocalAddr: p.GetLocalAddr(), RemoteAddr: p.GetRemoteAddr(), Offered: p.GetOfferedMechanisms()}
	if t := p.GetTls(); t != nil {
		c.TLS = &TLSInfo{
			Version:        uint16(t.GetVersion()),
			ServerName:     t.GetServerName(),
			Exporter:       t.GetTlsExporter(),
			Unique:         t.GetTlsUnique(),
			ServerEndPoint: t.GetTlsServerEndPoint(),
		}
		for _, der := range t.GetPeerCertificates() {
			// A certificate the core accepted in a handshake parses; skip any that does not.
			if cert, err := x509.ParseCertificate(der); err == nil {
				c.TLS.PeerCertificates = append(c.TLS.PeerCertificates, cert)
			}
		}
	}
	return c
}

func outcomeToProto(o *AuthOutcome) *pb.AuthOutcome {
	return &pb.AuthOutcome{Success: o.Success, Account: o.Account, Login: o.Login, Reason: o.Reason, Temporary: o.Temporary, FinalData: o.FinalData}
}

func outcomeFromProto(p *pb.AuthOutcome) *AuthOutcome {
	return &AuthOutcome{Success: p.GetSuccess(), Account: p.GetAccount(), Login: p.GetLogin(), Reason: p.GetReason(), Temporary: p.GetTemporary(), FinalData: p.GetFinalData()}
}

func policyToProto(pi *PolicyInfo) (*pb.PolicyInfo, error) {
	if pi == nil {
		return nil, nil
	}
	body, err := bodyWire.toWire(pi.Body)
	if err != nil {
		return nil, err
	}
	p := &pb.PolicyInfo{Body: body}
	for _, s := range pi.Stages {
		ps, err := stageWire.toWire(s)
		if err != nil {
			return nil, err
		}
		p.Stages = append(p.Stages, ps)
	}
	return p, nil
}

func policyFromProto(p *pb.PolicyInfo) (*PolicyInfo, error) {
	if p == nil {
		return nil, nil
	}
	body, err := bodyWire.fromWire(p.GetBody())
	if err != nil {
		return nil, err
	}
	pi := &PolicyInfo{Body: body}
	for _, ps := range p.GetStages() {
		s, err := stageWire.fromWire(ps)
		if err != nil {
			return nil, err
		}
		pi.Stages = append(pi.Stages, s)
	}
	return pi, nil
}

func checkRequestToProto(r *CheckRequest) (*pb.CheckRequest, error) {
	stage, err := stageWire.toWire(r.Stage)
	if err != nil {
		return nil, err
	}
	return &pb.CheckRequest{
		Instance:   r.Instance,
		Stage:      stage,
		Conn:       connToProto(r.Conn),
		Submission: r.Submission,
		Account:    r.Account,
		Helo:       r.Helo,
		MailFrom:   r.From,
		Recipients: r.Recipients,
		Size:       r.Size,
	}, nil
}

func checkRequestFromProto(p *pb.CheckRequest) (*CheckRequest, error) {
	stage, err := stageWire.fromWire(p.GetStage())
	if err != nil {
		return nil, err
	}
	return &CheckRequest{
		Instance:   p.GetInstance(),
		Stage:      stage,
		Conn:       connFromProto(p.GetConn()),
		Submission: p.GetSubmission(),
		Account:    p.GetAccount(),
		Helo:       p.GetHelo(),
		From:       p.GetMailFrom(),
		Recipients: p.GetRecipients(),
		Size:       p.GetSize(),
	}, nil
}

func verdictToProto(v Verdict) (*pb.Verdict, error) {
	a, err := actionWire.toWire(v.Action)
	if err != nil {
		return nil, err
	}
	p := &pb.Verdict{Action: a, Code: int32(v.Code), EnhancedCode: v.EnhancedCode, Text: v.Text, PrependHeaders: v.PrependHeaders}
	for _, h := range v.DeleteHeaders {
		p.DeleteHeaders = append(p.DeleteHeaders, &pb.HeaderRef{Name: h.Name, Index: int32(h.Index)})
	}
	return p, nil
}

func verdictFromProto(p *pb.Verdict) (Verdict, error) {
	a, err := actionWire.fromWire(p.GetAction())
	if err != nil {
		return Verdict{}, err
	}
	v := Verdict{Action: a, Code: int(p.GetCode()), EnhancedCode: p.GetEnhancedCode(), Text: p.GetText(), PrependHeaders: p.GetPrependHeaders()}
	for _, h := range p.GetDeleteHeaders() {
		v.DeleteHeaders = append(v.DeleteHeaders, HeaderRef{Name: h.GetName(), Index: int(h.GetIndex())})
	}
	return v, nil
}
