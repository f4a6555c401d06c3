package queue

import (
	"strings"
	"testing"
)

func TestHeaderFields(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes.
	for msg, want := range map[string][2]string{
		"Received: x\r\n\ty\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@x>\r\n": {"<a@b>", ""},
		"message-id:\r\n <folded@x>\r\nSubject: s\r\n\r\n":                        {"<folded@x>", "s"},
		"Subject: none\r\n\r\nMessage-ID: <body@x>\r\n":                           {"", "none"},
		"Message-ID: <trunc":                                {"<trunc", ""},
		"Message-ID: <a\x00b>\r\n\r\n":                      {"", ""},
		"Subject: a\tb\r\n\r\n":                             {"", "a b"},
		"Subject: =?utf-8?q?caf=C3=A9?=\r\n folded\r\n\r\n": {"", "=?utf-8?q?caf=C3=A9?= folded"},
		"Subject: " + long + "\r\n\r\n":                     {"", long[:250]},
		"Subject: x" + long + "\r\n\r\n":                    {"", "x" + long[:248]},
	} {
		id, subject := headerFields([]byte(msg))
		if id != want[0] || subject != want[1] {
			t.Errorf("%.40q: %q %q, want %q %q", msg, id, subject, want[0], want[1])
		}
	}
}
