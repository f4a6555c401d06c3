package policydkimsign

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// policyInfo is what the plugin asks of the core: the whole message at the
// data stage, nothing before.
var policyInfo = &sdk.PolicyInfo{Stages: []sdk.Stage{sdk.StageData}, Body: sdk.BodyFull}

// Bounds on what a check reads.
const (
	// sizeMargin is how much more than CheckRequest.Size is read before
	// the message counts as larger than announced.
	sizeMargin = 64 << 10
	// maxMessage is read at most, whatever the Size.
	maxMessage = 1 << 30
	// maxHeader bounds the header section, which is held in memory; the
	// body is streamed.
	maxHeader = 1 << 20
)

var (
	errTooLarge       = errors.New("policy-dkimsign: message larger than its announced size")
	errHeaderTooLarge = fmt.Errorf("policy-dkimsign: header section over %d bytes", maxHeader)
)

// signer is the Checker. It serves every instance of the plugin.
type signer struct {
	log *slog.Logger
	now func() time.Time // For x=; the library sets t= from the clock.

	mu        sync.Mutex
	instances map[string]*settings
}

var _ sdk.Checker = (*signer)(nil)
var _ sdk.Configurer = (*signer)(nil)

func newSigner(log *slog.Logger) *signer {
	return &signer{log: log, now: time.Now, instances: map[string]*settings{}}
}

// Configure validates an instance's table and loads its keys.
func (s *signer) Configure(ctx context.Context, c *sdk.Configuration) error {
	log := s.log.With(slog.String("instance", c.Instance))
	st, err := parseConfig(c, log.Warn)
	if err != nil {
		return err
	}
	if c.CheckOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[c.Instance] = st
	return nil
}

// Check signs the message at the data stage of a submission.
func (s *signer) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	cont := sdk.Verdict{Action: sdk.ActionContinue}
	if req.Stage != sdk.StageData {
		return cont, nil
	}
	s.mu.Lock()
	st := s.instances[req.Instance]
	s.mu.Unlock()
	if st == nil {
		return cont, fmt.Errorf("policy-dkimsign: instance %q is not configured", req.Instance)
	}
	if req.Message == nil {
		return cont, errors.New("policy-dkimsign: no message at the data stage")
	}
	log := s.log.With(slog.String("instance", req.Instance), slog.String("remote", req.Conn.RemoteAddr), slog.String("account", req.Account))
	if !req.Submission {
		log.Debug("not signing", slog.String("reason", "not an authenticated submission"))
		return cont, nil
	}
	sigs, keys, reason, err := s.sign(st, req)
	if err != nil {
		return cont, err
	}
	if reason != "" {
		log.Debug("not signing", slog.String("reason", reason))
		return cont, nil
	}
	selectors := make([]string, len(keys))
	for i, k := range keys {
		selectors[i] = k.selector + ":" + k.algorithm
	}
	log.Debug("signed", slog.String("domain", keys[0].domain), slog.Any("selectors", selectors))
	cont.PrependHeaders = sigs
	return cont, nil
}

// sign reads the message of req and returns its signatures and the keys
// that made them, or the reason it is not signed.
func (s *signer) sign(st *settings, req *sdk.CheckRequest) (sigs []string, keys []*key, reason string, err error) {
	limit := int64(maxMessage)
	if req.Size > 0 && req.Size < maxMessage-sizeMargin {
		limit = req.Size + sizeMargin
	}
	br := bufio.NewReaderSize(&limitReader{r: req.Message, n: limit}, 64<<10)
	raw, fields, err := readHeader(br)
	if err != nil {
		return nil, nil, "", err
	}
	if raw[0] == ' ' || raw[0] == '\t' {
		// Below a prepended field, the line would continue that field
		// (RFC 5322 §2.2.3): the message is not what was signed.
		return nil, nil, "header section starts with white space", nil
	}
	domain, reason := fromDomain(fields)
	if reason != "" {
		return nil, nil, reason, nil
	}
	keys = st.lookup(domain)
	if keys == nil {
		return nil, nil, fmt.Sprintf("no keys for From domain %s or a parent", domain), nil
	}

	counts := map[string]int{}
	for _, f := range fields {
		counts[strings.ToLower(f.name)]++
	}
	signers := make([]*dkim.Signer, 0, len(keys))
	closed := false
	defer func() {
		if !closed {
			for _, ds := range signers {
				ds.Close()
			}
		}
	}()
	writers := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		opts := &dkim.SignOptions{
			Domain:                 k.domain,
			Selector:               k.selector,
			Signer:                 k.signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             headerKeys(k.headers, counts),
		}
		if k.expiration > 0 {
			opts.Expiration = s.now().Add(k.expiration)
		}
		ds, err := dkim.NewSigner(opts)
		if err != nil {
			return nil, nil, "", fmt.Errorf("policy-dkimsign: %s._domainkey.%s: %w", k.selector, k.domain, err)
		}
		signers = append(signers, ds)
		writers = append(writers, ds)
	}
	w := io.MultiWriter(writers...)
	if _, err := w.Write(raw); err != nil {
		return nil, nil, "", fmt.Errorf("policy-dkimsign: signing: %w", err)
	}
	if _, err := io.Copy(w, br); err != nil {
		return nil, nil, "", fmt.Errorf("policy-dkimsign: reading the message: %w", err)
	}
	closed = true
	for i, ds := range signers {
		if err := ds.Close(); err != nil {
			for _, rest := range signers[i+1:] {
				rest.Close()
			}
			return nil, nil, "", fmt.Errorf("policy-dkimsign: signing with %s._domainkey.%s: %w", keys[i].selector, keys[i].domain, err)
		}
		sigs = append(sigs, ds.Signature())
	}
	return sigs, keys, "", nil
}

// lookup returns the keys of domain, else of its nearest parent with keys.
func (st *settings) lookup(domain string) []*key {
	for d := domain; d != ""; {
		if ks := st.keys[d]; ks != nil {
			return ks
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return nil
}

// headerKeys is the h= list: each of names as often as counts has it, From
// once more (RFC 6376 §5.4.2), so a From field added later breaks the
// signature. A verifier reads fields from the bottom up (§5.4.2).
func headerKeys(names []string, counts map[string]int) []string {
	var hk []string
	for _, n := range names {
		c := counts[strings.ToLower(n)]
		if strings.EqualFold(n, "From") {
			c++
		}
		for range c {
			hk = append(hk, n)
		}
	}
	return hk
}

// field is a header field: its name as go-msgauth takes it (trimmed) and
// its unfolded value.
type field struct {
	name, value string
}

// readHeader reads the header section of br up to and including the empty
// line that ends it (RFC 5322 §2.1), at most maxHeader bytes. A message
// that ends without the empty line has only a header section: raw gets the
// line ends it lacks, so the signature covers an empty body, as verifiers
// read it.
func readHeader(br *bufio.Reader) (raw []byte, fields []field, err error) {
	var line []byte
	for {
		p, err := br.ReadSlice('\n')
		if len(raw)+len(p) > maxHeader {
			return nil, nil, errHeaderTooLarge
		}
		raw = append(raw, p...)
		line = append(line, p...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // A long line goes on.
		}
		if err == io.EOF {
			if len(line) > 0 {
				raw = append(raw, "\r\n"...)
				fields = addLine(fields, line)
			}
			raw = append(raw, "\r\n"...)
			return raw, fields, nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("policy-dkimsign: reading the message: %w", err)
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return raw, fields, nil
		}
		fields = addLine(fields, line)
		line = line[:0]
	}
}

// addLine adds a header line to fields: a new field, or the continuation of
// the last one if it starts with white space (RFC 5322 §2.2.3).
func addLine(fields []field, line []byte) []field {
	l := strings.TrimRight(string(line), "\r\n")
	if len(fields) > 0 && len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
		fields[len(fields)-1].value += l
		return fields
	}
	name, value, _ := strings.Cut(l, ":")
	return append(fields, field{name: strings.TrimSpace(name), value: value})
}

// addressParser reads From fields; display names are not needed, so
// encoded words in any charset pass as they are.
var addressParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(charset string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// fromDomain returns the domain of the author, the one address of the one
// From field (RFC 5322 §3.6.2), in A-labels, or why there is none to sign
// for.
func fromDomain(fields []field) (string, string) {
	var from *field
	for i := range fields {
		if strings.EqualFold(fields[i].name, "From") {
			if from != nil {
				return "", "several From fields"
			}
			from = &fields[i]
		}
	}
	if from == nil {
		return "", "no From field"
	}
	addrs, err := addressParser.ParseList(from.value)
	if err != nil {
		return "", fmt.Sprintf("From field: %v", err)
	}
	if len(addrs) != 1 {
		return "", fmt.Sprintf("From field with %d addresses", len(addrs))
	}
	a, err := mailaddr.ParseAddress(addrs[0].Address)
	if err != nil {
		return "", fmt.Sprintf("From address: %v", err)
	}
	if a.Domain.IsZero() {
		return "", "From address at an address literal"
	}
	return a.Domain.ASCII, ""
}

// limitReader reads r, and fails with errTooLarge past n bytes.
type limitReader struct {
	r io.Reader
	n int64 // Bytes still allowed.
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One more byte tells a message of exactly the limit from a larger one.
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
