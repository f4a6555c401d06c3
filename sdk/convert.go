package sdk

import (
	"crypto/x509"

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

func deliverResultToProto(r *DeliverResult) *pb.DeliverResult {
	p := &pb.DeliverResult{}
	for _, rr := range r.Recipients {
		p.Recipients = append(p.Recipients, &pb.RecipientResult{
			Address:      rr.Address,
			Status:       statusToProto(rr.Status),
			Code:         int32(rr.Code),
			EnhancedCode: rr.EnhancedCode,
			Text:         rr.Text,
			RemoteHost:   rr.RemoteHost,
			RemoteIp:     rr.RemoteIP,
			Tls: &pb.TLSUse{
				Verification: pb.TLSUse_Verification(rr.TLS.Verification),
				Version:      rr.TLS.Version,
				Cipher:       rr.TLS.Cipher,
			},
		})
	}
	return p
}

func deliverResultFromProto(p *pb.DeliverResult) *DeliverResult {
	r := &DeliverResult{}
	for _, rr := range p.GetRecipients() {
		r.Recipients = append(r.Recipients, RecipientResult{
			Address:      rr.GetAddress(),
			Status:       statusFromProto(rr.GetStatus()),
			Code:         int(rr.GetCode()),
			EnhancedCode: rr.GetEnhancedCode(),
			Text:         rr.GetText(),
			RemoteHost:   rr.GetRemoteHost(),
			RemoteIP:     rr.GetRemoteIp(),
			TLS: TLSUse{
				Verification: Verification(rr.GetTls().GetVerification()),
				Version:      rr.GetTls().GetVersion(),
				Cipher:       rr.GetTls().GetCipher(),
			},
		})
	}
	return r
}

func statusToProto(s Status) pb.Status {
	switch s {
	case StatusDelivered:
		return pb.Status_STATUS_DELIVERED
	case StatusPermanent:
		return pb.Status_STATUS_PERMANENT
	}
	return pb.Status_STATUS_TEMPORARY
}

func statusFromProto(s pb.Status) Status {
	switch s {
	case pb.Status_STATUS_DELIVERED:
		return StatusDelivered
	case pb.Status_STATUS_PERMANENT:
		return StatusPermanent
	}
	return StatusTemporary
}

func connToProto(c ConnInfo) *pb.ConnInfo {
	p := &pb.ConnInfo{Protocol: c.Protocol, Listener: c.Listener, LocalAddr: c.LocalAddr, RemoteAddr: c.RemoteAddr}
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
	c := ConnInfo{Protocol: p.GetProtocol(), Listener: p.GetListener(), LocalAddr: p.GetLocalAddr(), RemoteAddr: p.GetRemoteAddr()}
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

func policyToProto(pi *PolicyInfo) *pb.PolicyInfo {
	if pi == nil {
		return nil
	}
	p := &pb.PolicyInfo{Body: pb.BodyNeed(pi.Body)}
	for _, s := range pi.Stages {
		p.Stages = append(p.Stages, pb.Stage(s))
	}
	return p
}

func policyFromProto(p *pb.PolicyInfo) *PolicyInfo {
	if p == nil {
		return nil
	}
	pi := &PolicyInfo{Body: BodyNeed(p.GetBody())}
	for _, s := range p.GetStages() {
		pi.Stages = append(pi.Stages, Stage(s))
	}
	return pi
}

func checkRequestToProto(r *CheckRequest) *pb.CheckRequest {
	return &pb.CheckRequest{
		Instance:   r.Instance,
		Stage:      pb.Stage(r.Stage),
		Conn:       connToProto(r.Conn),
		Submission: r.Submission,
		Account:    r.Account,
		Helo:       r.Helo,
		MailFrom:   r.From,
		Recipients: r.Recipients,
		Size:       r.Size,
	}
}

func checkRequestFromProto(p *pb.CheckRequest) *CheckRequest {
	return &CheckRequest{
		Instance:   p.GetInstance(),
		Stage:      Stage(p.GetStage()),
		Conn:       connFromProto(p.GetConn()),
		Submission: p.GetSubmission(),
		Account:    p.GetAccount(),
		Helo:       p.GetHelo(),
		From:       p.GetMailFrom(),
		Recipients: p.GetRecipients(),
		Size:       p.GetSize(),
	}
}

func verdictToProto(v Verdict) *pb.Verdict {
	return &pb.Verdict{Action: pb.Action(v.Action), Code: int32(v.Code), EnhancedCode: v.EnhancedCode, Text: v.Text, PrependHeaders: v.PrependHeaders}
}

func verdictFromProto(p *pb.Verdict) Verdict {
	return Verdict{Action: Action(p.GetAction()), Code: int(p.GetCode()), EnhancedCode: p.GetEnhancedCode(), Text: p.GetText(), PrependHeaders: p.GetPrependHeaders()}
}
