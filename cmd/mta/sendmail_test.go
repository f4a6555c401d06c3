package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSendmailArgs(t *testing.T) {
	t.Setenv(configEnv, "")
	tests := []struct {
		argv    []string
		want    sendmailArgs
		wantErr string
	}{
		{[]string{"-t", "-oi", "-fbob@example.org", "x@example.net"}, sendmailArgs{config: defaultConfig, fromHeader: true, ignoreDots: true, sender: "bob@example.org", rcpts: []string{"x@example.net"}}, ""},
		{[]string{"-config", "/etc/mta.toml", "-f", "a@b.example", "-F", "Ann Example", "-odi", "-bm", "y@z.example", "--", "-odd@x.example"}, sendmailArgs{config: "/etc/mta.toml", sender: "a@b.example", fullName: "Ann Example", rcpts: []string{"y@z.example", "-odd@x.example"}}, ""},
		{[]string{"-i", "-r", "c@d.example"}, sendmailArgs{config: defaultConfig, ignoreDots: true, sender: "c@d.example"}, ""},
		{[]string{"-f"}, sendmailArgs{}, "option -f needs a value"},
		{[]string{"-X"}, sendmailArgs{}, "unknown option -X"},
	}
	for _, tc := range tests {
		got, err := parseSendmailArgs(tc.argv)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: error %v, want %q", tc.argv, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: got %+v, %v; want %+v", tc.argv, got, err, tc.want)
		}
	}
}

func TestPrepareMessage(t *testing.T) {
	now := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		in        string
		args      sendmailArgs
		want      string
		wantRcpts []string
	}{
		{
			"LF lines, -t, Bcc removed with its continuation, headers added",
			"To: a@example.net, \"B\" <b@example.net>\nBcc: hidden@example.net,\n  also@example.net\nSubject: hi\n\nbody\n.\nafter the dot\n",
			sendmailArgs{fromHeader: true},
			"From: <me@example.org>\r\nDate: Sun, 22 Nov 2026 05:00:00 +0000\r\nMessage-ID: <ID@mail.example.org>\r\nTo: a@example.net, \"B\" <b@example.net>\r\nSubject: hi\r\n\r\nbody\r\n",
			[]string{"a@example.net", "b@example.net", "hidden@example.net", "also@example.net"},
		},
		{
			"-i keeps the dot line; complete header kept as is",
			"From: x@example.org\r\nDate: Sat, 21 Nov 2026 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n.\r\nmore\r\n",
			sendmailArgs{ignoreDots: true},
			"From: x@example.org\r\nDate: Sat, 21 Nov 2026 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n.\r\nmore\r\n",
			nil,
		},
		{
			"full name in the added From",
			"Subject: s\n\nb\n",
			sendmailArgs{fullName: "Me Myself"},
			"From: \"Me Myself\" <me@example.org>\r\nDate: Sun, 22 Nov 2026 05:00:00 +0000\r\nMessage-ID: <ID@mail.example.org>\r\nSubject: s\r\n\r\nb\r\n",
			nil,
		},
	}
	for _, tc := range tests {
		got, rcpts, err := prepareMessage([]byte(tc.in), &tc.args, "me@example.org", "mail.example.org", now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s := string(got)
		if i := strings.Index(s, "Message-ID: <"); i >= 0 && strings.Contains(tc.want, "<ID@") {
			j := strings.Index(s[i:], "@")
			s = s[:i] + "Message-ID: <ID" + s[i+j:]
		}
		if s != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, s, tc.want)
		}
		if !reflect.DeepEqual(rcpts, tc.wantRcpts) {
			t.Errorf("%s: recipients %v, want %v", tc.name, rcpts, tc.wantRcpts)
		}
	}
	if _, _, err := prepareMessage([]byte("To: not an address <\n\nx\n"), &sendmailArgs{fromHeader: true}, "me@example.org", "h", now); err == nil {
		t.Error("a malformed To header was accepted with -t")
	}
}
