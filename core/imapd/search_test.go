package imapd

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestIndexOnly: SEARCH reads messages from the flag index only where no
// criterion, also under NOT and OR, needs the record or the body.
func TestIndexOnly(t *testing.T) {
	subject := []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "x"}}
	for _, tc := range []struct {
		cr   imap.SearchCriteria
		want bool
	}{
		{imap.SearchCriteria{}, true},
		{imap.SearchCriteria{Header: subject, SentSince: time.Now()}, true},
		{imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}, NotFlag: []imap.Flag{`\Deleted`}}, true},
		{imap.SearchCriteria{Flag: []imap.Flag{"$Work"}}, false},
		{imap.SearchCriteria{Since: time.Now()}, false},
		{imap.SearchCriteria{Larger: 10}, false},
		{imap.SearchCriteria{Text: []string{"x"}}, false},
		{imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"x"}}}}, false},
		{imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Header: subject}, {NotFlag: []imap.Flag{"junk"}}}}}, false},
		{imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Header: subject}, {Flag: []imap.Flag{imap.FlagAnswered}}}}}, true},
		{imap.SearchCriteria{ModSeq: &imap.SearchCriteriaModSeq{ModSeq: 5}}, false},
	} {
		if got := indexOnly(&tc.cr); got != tc.want {
			t.Errorf("indexOnly(%+v) = %v, want %v", tc.cr, got, tc.want)
		}
	}
}
