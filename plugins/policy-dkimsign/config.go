package policydkimsign

import (
	"crypto"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// config is an instance table, [policies.NAME.config].
type config struct {
	// Keys sign the mail of their domains; at least one. Keys of one
	// domain each add a signature.
	Keys []keyConfig `toml:"keys"`
}

// keyConfig is one [[policies.NAME.config.keys]] table.
type keyConfig struct {
	// Domain is the signing domain (d=), in U-labels or A-labels. It signs
	// mail from itself and from its subdomains that have no keys of their
	// own. Required.
	Domain string `toml:"domain"`
	// Selector (s=) names the key's record, SELECTOR._domainkey.DOMAIN
	// (RFC 6376 §3.1). Required.
	Selector string `toml:"selector"`
	// KeyFile is the PEM private key, ed25519 or RSA; relative to the
	// directory of mta.toml. Read at Configure. Required.
	KeyFile string `toml:"key_file"`
	// Expiration, if set, is how long signatures stay valid (x=, RFC 6376
	// §3.5), e.g. "720h"; at least 1h, as a message may wait in queues.
	// Default: no expiration.
	Expiration string `toml:"expiration"`
	// Headers are the header fields to sign, replacing the default list
	// (defaultHeaders); it must include From. Each is signed as often as
	// the message has it; From once more.
	Headers []string `toml:"headers"`
}

// defaultHeaders are signed when a key sets no headers: RFC 6376 §5.4.1's
// list, with Message-ID, the MIME fields (RFC 2045), and the List-* fields
// of RFC 2369 and RFC 2919, and List-Unsubscribe-Post, which RFC 8058 §4
// wants signed. Fields that relays add or change (Received, Return-Path)
// are not in it (RFC 6376 §5.4).
var defaultHeaders = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "To", "Cc",
	"Message-ID", "In-Reply-To", "References",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive", "List-Unsubscribe-Post",
}

// minExpiration is the shortest expiration allowed: the queue retries for
// hours, and a signature that expired before delivery is no signature.
const minExpiration = time.Hour

// key is a loaded signing key.
type key struct {
	domain     string // A-labels, lower case.
	selector   string
	signer     crypto.Signer
	algorithm  string        // "ed25519" or "rsa", for logs.
	expiration time.Duration // 0: none.
	headers    []string      // Names to sign, each once, From first.
}

// settings is a validated instance configuration with its keys loaded.
type settings struct {
	keys map[string][]*key // By signing domain in A-labels.
}

// parseConfig decodes and validates the instance table of c and loads its
// keys. Problems are sdk.ConfigErrors naming the keys; warnings go to warn.
func parseConfig(c *sdk.Configuration, warn func(msg string, args ...any)) (*settings, error) {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return nil, err
	}
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(cfg.Keys) == 0 {
		bad("keys", "at least one [[keys]] table (domain, selector, key_file) is required")
	}
	s := &settings{keys: map[string][]*key{}}
	seen := map[string]int{} // selector._domainkey.domain → index.
	for i, kc := range cfg.Keys {
		p := fmt.Sprintf("keys[%d]", i)
		k := &key{selector: kc.Selector}
		var d mailaddr.Domain
		var err error
		if kc.Domain == "" {
			bad(p+".domain", "required")
		} else if d, err = mailaddr.ParseDomain(kc.Domain); err != nil {
			bad(p+".domain", "%v", err)
		}
		k.domain = d.ASCII
		if kc.Selector == "" {
			bad(p+".selector", "required")
		} else if err := dkimkey.CheckSelector(kc.Selector); err != nil {
			bad(p+".selector", "%s", strings.TrimPrefix(err.Error(), "dkimkey: "))
		} else if !d.IsZero() {
			if _, err := dkimkey.CheckName(kc.Selector, d.ASCII); err != nil {
				bad(p+".selector", "%s", strings.TrimPrefix(err.Error(), "dkimkey: "))
			}
			name := strings.ToLower(dkimkey.Name(kc.Selector, d.ASCII))
			if j, ok := seen[name]; ok {
				bad(p+".selector", "%s is also the selector of keys[%d] for %s: each key needs its own record", kc.Selector, j, d.ASCII)
			}
			seen[name] = i
		}

		if kc.KeyFile == "" {
			bad(p+".key_file", "required")
		} else {
			path := kc.KeyFile
			if !filepath.IsAbs(path) {
				path = filepath.Join(c.ConfigDir, path)
			}
			if k.signer, err = dkimkey.Load(path); err != nil {
				bad(p+".key_file", "%s", strings.ReplaceAll(err.Error(), "dkimkey: ", ""))
			} else {
				k.algorithm = "rsa"
				if _, ok := k.signer.Public().(ed25519.PublicKey); ok {
					k.algorithm = "ed25519"
				}
				if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
					warn("DKIM private key file is readable by every user", "key", p+".key_file", "file", path, "mode", fi.Mode().Perm().String())
				}
			}
		}

		if kc.Expiration != "" {
			exp, err := time.ParseDuration(kc.Expiration)
			switch {
			case err != nil:
				bad(p+".expiration", "%q is not a duration such as \"720h\"", kc.Expiration)
			case exp < minExpiration:
				bad(p+".expiration", "%s is under %s: messages waiting in a queue would arrive with expired signatures", exp, minExpiration)
			default:
				k.expiration = exp
			}
		}

		k.headers = defaultHeaders
		if kc.Headers != nil {
			k.headers = nil
			hasFrom := false
			for j, h := range kc.Headers {
				if !validFieldName(h) {
					bad(fmt.Sprintf("%s.headers[%d]", p, j), "%q is not a header field name (RFC 5322 §3.6.8)", h)
					continue
				}
				if slices.ContainsFunc(k.headers, func(o string) bool { return strings.EqualFold(o, h) }) {
					continue // Listed once; counted from the message.
				}
				hasFrom = hasFrom || strings.EqualFold(h, "From")
				k.headers = append(k.headers, h)
			}
			if !hasFrom {
				bad(p+".headers", "must include From (RFC 6376 §5.4)")
			}
		}
		s.keys[k.domain] = append(s.keys[k.domain], k)
	}
	if errs != nil {
		return nil, errs
	}
	return s, nil
}

// validFieldName reports whether s is a header field name: printable
// ASCII but the colon (RFC 5322 §3.6.8), at most 998 octets (§2.1.1).
func validFieldName(s string) bool {
	if s == "" || len(s) > 998 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
