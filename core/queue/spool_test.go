package queue

import "testing"

func TestMessageID(t *testing.T) {
	for msg, want := range map[string]string{
		"Received: x\r\n\ty\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@x>\r\n": "<a@b>",
		"message-id:\r\n <folded@x>\r\nSubject: s\r\n\r\n":                        "<folded@x>",
		"Subject: none\r\n\r\nMessage-ID: <body@x>\r\n":                           "",
		"Message-ID: <trunc":           "<trunc",
		"Message-ID: <a\x00b>\r\n\r\n": "",
	} {
		if got := messageID([]byte(msg)); got != want {
			t.Errorf("%q: %q, want %q", msg, got, want)
		}
	}
}
