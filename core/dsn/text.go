package dsn

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// explain returns the human-readable part (RFC 3464 §2 asks for one): what
// happened to each recipient and what the sender can do, CRLF lines.
func explain(n Notification, rcpts []Recipient, orig *original) string {
	var t textWriter
	t.para(0, "This is the mail system at "+n.ReportingMTA+".")
	if n.Kind == Delay {
		t.para(0, "Your message has not been delivered yet to the recipients below. "+
			"The mail system keeps trying, and you will get another message if it gives up. "+
			"You do not need to send the message again.")
	} else {
		t.para(0, "Your message could not be delivered to the recipients below. "+
			"The mail system has given up on them and will not try again.")
	}
	for _, r := range rcpts {
		t.para(0, "<"+clean(r.Address)+">")
		res := r.Result
		switch {
		case res.Code != 0 && res.RemoteHost != "" && res.RemoteIP != "":
			t.para(4, "The mail server "+remoteMTA(res)+" ["+clean(res.RemoteIP)+"] answered:")
			t.para(8, reply(res))
		case res.Code != 0 && remoteMTA(res) != "":
			t.para(4, "The mail server "+remoteMTA(res)+" answered:")
			t.para(8, reply(res))
		case res.Code != 0:
			t.para(4, "The receiving mail server answered:")
			t.para(8, reply(res))
		case clean(res.Text) != "":
			t.para(4, "Delivery failed: "+clean(res.Text))
		default:
			t.para(4, "No reason was recorded.")
		}
		if !r.LastAttempt.IsZero() {
			t.para(4, "Last attempt: "+r.LastAttempt.Format(time.RFC1123Z)+".")
		}
		if n.Kind == Delay && !r.WillRetryUntil.IsZero() {
			t.para(4, "Delivery will be tried until "+r.WillRetryUntil.Format(time.RFC1123Z)+".")
		}
		if a := advice(n.Kind, status(n.Kind, res)); a != "" {
			t.para(4, a)
		}
	}
	switch {
	case orig == nil || len(orig.content) == 0:
	case orig.full:
		t.para(0, "Your message is attached.")
	case orig.truncated:
		t.para(0, fmt.Sprintf("Your message is larger than %d KiB: only its headers are attached.", MaxReturn>>10))
	default:
		t.para(0, "The headers of your message are attached.")
	}
	return strings.TrimSuffix(t.String(), "\r\n") // No empty line before the boundary.
}

// advice tells the sender what a status code means for them, by its
// subject and detail (RFC 3463 §3); empty if there is nothing to add.
func advice(k Kind, status string) string {
	_, sub, _ := strings.Cut(status, ".")
	if k == Delay {
		switch {
		case sub == "2.2":
			return "The recipient's mailbox is full; delivery may succeed when they make room."
		case strings.HasPrefix(sub, "4."):
			return "The recipient's mail server could not be reached or did not answer."
		}
		return ""
	}
	switch {
	case sub == "1.1":
		return "The address does not exist there. Check it for typing mistakes, or ask the recipient for their current address, then send the message again."
	case sub == "1.2" || sub == "4.4":
		return "The recipient's domain does not exist or does not receive mail. Check the part of the address after the @."
	case strings.HasPrefix(sub, "1."):
		return "The address was not accepted. Check it and send the message again."
	case sub == "2.2":
		return "The recipient's mailbox is full. Try again later, or reach the recipient another way."
	case sub == "2.3" || sub == "3.4":
		return "The message is too large for the recipient's mail system. Send it again with smaller or fewer attachments, or share large files by a link."
	case strings.HasPrefix(sub, "2."):
		return "The recipient's mailbox does not accept mail. Reach the recipient another way."
	case sub == "4.7":
		return "The mail system tried for too long without success. You may send the message again later."
	case strings.HasPrefix(sub, "4."):
		return "The recipient's mail server could not be reached. You may send the message again later."
	case strings.HasPrefix(sub, "7."):
		return "The recipient's mail system refused the message for a policy or security reason, for example because it looked like spam or your domain's authentication checks failed. Reach the recipient another way, or forward this report to your mail administrator."
	}
	return "If the reason is unclear, forward this report to your mail administrator."
}

// textWriter builds paragraphs of text wrapped at 76 columns, CRLF lines.
type textWriter struct{ strings.Builder }

// para writes s wrapped with the given indent, then an empty line. A word
// too long for a line gets a line of its own, split at 900 octets so that
// no line exceeds 998 (RFC 5322 §2.1.1), between characters: s must be
// valid UTF-8.
func (t *textWriter) para(indent int, s string) {
	const width, hard = 76, 900
	pad := strings.Repeat(" ", indent)
	n := 0 // Columns on the current line; 0: nothing written yet.
	for _, w := range strings.Fields(s) {
		for len(w) > hard {
			cut := hard
			for !utf8.RuneStart(w[cut]) {
				cut--
			}
			if n > 0 {
				t.WriteString("\r\n")
			}
			t.WriteString(pad + w[:cut] + "\r\n")
			w, n = w[cut:], 0
		}
		l := utf8.RuneCountInString(w)
		switch {
		case n == 0:
			t.WriteString(pad + w)
			n = indent + l
		case n+1+l > width:
			t.WriteString("\r\n" + pad + w)
			n = indent + l
		default:
			t.WriteString(" " + w)
			n += 1 + l
		}
	}
	if n > 0 {
		t.WriteString("\r\n")
	}
	t.WriteString("\r\n")
}
