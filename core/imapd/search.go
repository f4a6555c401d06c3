package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/switchyard-mta/switchyard/core/store"
)

// Search is SEARCH (RFC 9051 §6.4.4), with the ESEARCH return options MIN,
// MAX, ALL and COUNT (RFC 4731) and SAVE (RFC 5182). go-imap parses the
// criteria and has no matcher for servers; this one reads a message only
// for criteria on its header or body. Strings match as case-insensitive
// substrings of the decoded header fields (RFC 2047) and of the decoded
// text parts (Content-Transfer-Encoding undone; charsets other than UTF-8
// and US-ASCII are compared undecoded). Dates compare by day, ignoring
// time and zone (RFC 9051 §6.4.4). \Recent is never set, so NEW matches
// nothing and OLD everything.
// maxSearchDepth bounds the nesting of NOT and OR keys, which the matching
// recurses; the framer bounds parenthesized lists.
const maxSearchDepth = 100

// searchDepth returns the nesting depth of cr's NOT and OR keys, stopping
// past maxSearchDepth.
func searchDepth(cr *imap.SearchCriteria, depth int) int {
	if depth > maxSearchDepth {
		return depth
	}
	deepest := depth
	for i := range cr.Not {
		deepest = max(deepest, searchDepth(&cr.Not[i], depth+1))
	}
	for i := range cr.Or {
		deepest = max(deepest, searchDepth(&cr.Or[i][0], depth+1), searchDepth(&cr.Or[i][1], depth+1))
	}
	return deepest
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (data *imap.SearchData, err error) {
	defer s.begin(&err)()
	v := s.view
	if v == nil {
		return nil, errNoMailbox
	}
	if searchDepth(criteria, 0) > maxSearchDepth {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeLimit, Text: "Search criteria nested too deeply"}
	}
	all := v.UIDs()
	sr := &searcher{s: s, n: v.Len(), saved: s.searchRes}
	if len(all) > 0 {
		sr.last = all[len(all)-1]
	}
	ok, err := sr.matchAll(all, criteria)
	if err != nil {
		return nil, err
	}

	data = &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	var matched []store.UID
	for i, uid := range all {
		if !ok[i] {
			continue
		}
		seq := uint32(i + 1)
		matched = append(matched, uid)
		num := seq
		if kind == imapserver.NumKindUID {
			num = uint32(uid)
		}
		seqs.AddNum(seq)
		uids.AddNum(imap.UID(uid))
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		// RFC 5182 §2.1: with only MIN and/or MAX, only those are saved.
		if !options.ReturnAll && !options.ReturnCount && (options.ReturnMin || options.ReturnMax) && len(matched) > 0 {
			first, last := matched[0], matched[len(matched)-1]
			matched = nil
			if options.ReturnMin {
				matched = append(matched, first)
			}
			if options.ReturnMax && (!options.ReturnMin || last != first) {
				matched = append(matched, last)
			}
		}
		s.searchRes = matched
	}
	return data, nil
}

// searchChunk is how many messages a search worker takes at a time, and
// the fewest a search uses a second worker for.
const searchChunk = 256

// maxSearchWorkers bounds the goroutines one SEARCH matches messages on.
const maxSearchWorkers = 4

// matchAll reports which messages of the view meet cr: ok[i] for the
// message with UID all[i]. The records are read and matched a chunk at a
// time, and a large mailbox on several cores: decoding records and reading
// files for a header or body take the time.
func (sr *searcher) matchAll(all []store.UID, cr *imap.SearchCriteria) ([]bool, error) {
	ok := make([]bool, len(all))
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		err     error
		wg      sync.WaitGroup
	)
	fail := func(e error) {
		errOnce.Do(func() { err = e })
		failed.Store(true)
	}
	v := sr.s.view
	read := v.Messages
	if indexOnly(cr) {
		read = v.Indexed // No record decoded: a SEARCH SUBJECT reads only the headers.
	}
	workers := min(runtime.GOMAXPROCS(0), maxSearchWorkers, (len(all)+searchChunk-1)/searchChunk)
	for range max(workers, 1) {
		wg.Go(func() {
			for !failed.Load() {
				start := int(next.Add(searchChunk)) - searchChunk
				if start >= len(all) {
					return
				}
				msgs, merr := read(sr.s.ctx(), all[start:min(start+searchChunk, len(all))])
				if merr != nil {
					fail(sr.s.storeError("search", merr, imap.ResponseCodeNonExistent))
					return
				}
				for _, m := range msgs {
					c := candidate{seq: v.Seq(m.UID), m: m}
					matched, merr := sr.match(&c, cr)
					c.close()
					if merr != nil {
						fail(merr)
						return
					}
					ok[c.seq-1] = matched
				}
			}
		})
	}
	wg.Wait()
	return ok, err
}

// searcher matches messages of the selected mailbox against criteria.
type searcher struct {
	s     *session
	n     uint32      // Messages in the view: "*" of sequence sets.
	last  store.UID   // Highest UID in the view: "*" of UID sets.
	saved []store.UID // "$" (RFC 5182).
}

// candidate is one message being matched; its file is opened on demand.
type candidate struct {
	seq      uint32
	m        store.Message
	content  *store.Content
	raw      []byte // The header section as stored.
	rawLower []byte // raw, lower case.
	header   *textproto.Header
}

func (c *candidate) close() {
	if c.content != nil {
		c.content.Close()
	}
}

func (sr *searcher) open(c *candidate) (*store.Content, error) {
	if c.content == nil {
		var err error
		if c.content, err = sr.s.account.OpenMessage(c.m); err != nil {
			return nil, err
		}
	}
	return c.content, nil
}

func (sr *searcher) rawHeader(c *candidate) ([]byte, error) {
	if c.raw == nil {
		var err error
		if c.content != nil {
			c.raw, err = c.content.Header()
		} else {
			c.raw, err = sr.s.account.ReadHeader(c.m)
		}
		if err != nil {
			return nil, err
		}
	}
	return c.raw, nil
}

func (sr *searcher) headerOf(c *candidate) (*textproto.Header, error) {
	if c.header == nil {
		b, err := sr.rawHeader(c)
		if err != nil {
			return nil, err
		}
		// A malformed header yields the fields before the bad line.
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
		c.header = &h
	}
	return c.header, nil
}

// lacks reports, without parsing the header, that no field of c can
// contain value: value is not empty and has no white space, the header has
// no encoded words (RFC 2047), and its bytes do not contain value, ignoring
// case. Unfolding only joins lines with a space and decoding only changes
// encoded words, so such a value in a decoded field is in the bytes too.
// False means only that the fields must be looked at.
func (sr *searcher) lacks(c *candidate, value string) (bool, error) {
	if !prefilterable(value) {
		return false, nil
	}
	raw, err := sr.rawHeader(c)
	if err != nil {
		return false, err
	}
	if c.rawLower == nil {
		c.rawLower = bytes.ToLower(raw)
	}
	return headerLacks(raw, c.rawLower, value), nil
}

// prefilterable reports whether headerLacks can rule out value.
func prefilterable(value string) bool {
	return value != "" && !strings.ContainsAny(value, " \t\r\n")
}

// headerLacks is lacks of the header raw, whose lower case is rawLower,
// for a prefilterable value.
func headerLacks(raw, rawLower []byte, value string) bool {
	return !bytes.Contains(raw, []byte("=?")) && !bytes.Contains(rawLower, []byte(strings.ToLower(value)))
}

// match reports whether c meets all of cr. A message expunged meanwhile
// meets nothing.
func (sr *searcher) match(c *candidate, cr *imap.SearchCriteria) (bool, error) {
	ok, err := sr.matchCriteria(c, cr)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, sr.s.storeError("search", err, imap.ResponseCodeNonExistent)
	}
	return ok, nil
}

func (sr *searcher) matchCriteria(c *candidate, cr *imap.SearchCriteria) (bool, error) {
	m := c.m
	for _, set := range cr.SeqNum {
		if !inRanges(c.seq, sr.n, seqRanges(set)) {
			return false, nil
		}
	}
	for _, set := range cr.UID {
		if imap.IsSearchRes(set) {
			if _, ok := slices.BinarySearch(sr.saved, m.UID); !ok {
				return false, nil
			}
		} else if !inRanges(uint32(m.UID), uint32(sr.last), uidRanges(set)) {
			return false, nil
		}
	}
	for _, f := range cr.Flag {
		if !hasFlag(m, f) {
			return false, nil
		}
	}
	for _, f := range cr.NotFlag {
		if hasFlag(m, f) {
			return false, nil
		}
	}
	if cr.Larger > 0 && m.Size <= cr.Larger || cr.Smaller > 0 && m.Size >= cr.Smaller {
		return false, nil
	}
	if !inDays(m.Received, cr.Since, cr.Before) {
		return false, nil
	}

	for _, hf := range cr.Header {
		if lacks, err := sr.lacks(c, hf.Value); err != nil || lacks {
			return false, err
		}
	}
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() || len(cr.Header) > 0 {
		h, err := sr.headerOf(c)
		if err != nil {
			return false, err
		}
		if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
			mh := mail.Header{Header: gomessage.Header{Header: *h}}
			date, err := mh.Date()
			if err != nil || date.IsZero() || !inDays(date, cr.SentSince, cr.SentBefore) {
				return false, nil
			}
		}
		mh := gomessage.Header{Header: *h}
		for _, hf := range cr.Header {
			if !matchFields(mh.FieldsByKey(hf.Key), hf.Value) {
				return false, nil
			}
		}
	}
	for _, text := range cr.Body {
		if ok, err := sr.matchBody(c, text, false); err != nil || !ok {
			return false, err
		}
	}
	for _, text := range cr.Text {
		if ok, err := sr.matchBody(c, text, true); err != nil || !ok {
			return false, err
		}
	}

	for i := range cr.Not {
		if ok, err := sr.matchCriteria(c, &cr.Not[i]); err != nil || ok {
			return false, err
		}
	}
	for i := range cr.Or {
		ok, err := sr.matchCriteria(c, &cr.Or[i][0])
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = sr.matchCriteria(c, &cr.Or[i][1]); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// matchBody reports whether a text part of c, or with header also a header
// field, contains text.
func (sr *searcher) matchBody(c *candidate, text string, header bool) (bool, error) {
	content, err := sr.open(c)
	if err != nil {
		return false, err
	}
	text = strings.ToLower(text)
	// An unknown charset or transfer encoding leaves the body undecoded.
	if e, err := gomessage.Read(whole(content)); err == nil || e != nil {
		return matchEntity(e, text, header), nil
	}
	// The header is malformed: search the raw bytes.
	start := content.HeaderSize
	if header {
		start = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(content, start, content.Size()-start))
	if err != nil {
		return false, err
	}
	return bytes.Contains(bytes.ToLower(b), []byte(text)), nil
}

// matchEntity searches an entity's text parts for text, lower case, and
// with header its header fields too.
func matchEntity(e *gomessage.Entity, text string, header bool) bool {
	if header && matchFields(e.Header.Fields(), text) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if part == nil {
				return false
			}
			if err == nil && matchEntity(part, text, header) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(e.Body) // Up to a decoding error.
	return bytes.Contains(bytes.ToLower(b), []byte(text))
}

// matchFields reports whether a field's decoded value contains value,
// case-insensitively; an empty value matches any field (RFC 9051 §6.4.4,
// HEADER).
func matchFields(fields gomessage.HeaderFields, value string) bool {
	value = strings.ToLower(value)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), value) {
			return true
		}
	}
	return false
}

// indexOnly reports whether cr looks only at what View.Indexed gives:
// sequence numbers, UIDs, system flags and header fields.
func indexOnly(cr *imap.SearchCriteria) bool {
	if !cr.Since.IsZero() || !cr.Before.IsZero() || len(cr.Body) > 0 || len(cr.Text) > 0 || cr.Larger > 0 || cr.Smaller > 0 || cr.ModSeq != nil {
		return false
	}
	for _, f := range slices.Concat(cr.Flag, cr.NotFlag) {
		switch strings.ToLower(string(f)) {
		case `\seen`, `\answered`, `\flagged`, `\deleted`, `\draft`, `\recent`:
		default:
			return false // A keyword: in the record only.
		}
	}
	for i := range cr.Not {
		if !indexOnly(&cr.Not[i]) {
			return false
		}
	}
	for i := range cr.Or {
		if !indexOnly(&cr.Or[i][0]) || !indexOnly(&cr.Or[i][1]) {
			return false
		}
	}
	return true
}

func hasFlag(m store.Message, f imap.Flag) bool {
	switch strings.ToLower(string(f)) {
	case `\seen`:
		return m.Seen
	case `\answered`:
		return m.Answered
	case `\flagged`:
		return m.Flagged
	case `\deleted`:
		return m.Deleted
	case `\draft`:
		return m.Draft
	case `\recent`:
		return false
	}
	_, ok := slices.BinarySearch(m.Keywords, strings.ToLower(string(f)))
	return ok
}

// inDays reports whether t's day (in its own zone) is on or after since's
// and before before's; zero bounds are open.
func inDays(t, since, before time.Time) bool {
	y, mo, d := t.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	return (since.IsZero() || !day.Before(since)) && (before.IsZero() || day.Before(before))
}

// numRange is a range of a number set, "*" still 0.
type numRange struct{ start, stop uint32 }

func seqRanges(set imap.SeqSet) []numRange {
	l := make([]numRange, len(set))
	for i, r := range set {
		l[i] = numRange{r.Start, r.Stop}
	}
	return l
}

func uidRanges(set imap.UIDSet) []numRange {
	l := make([]numRange, len(set))
	for i, r := range set {
		l[i] = numRange{uint32(r.Start), uint32(r.Stop)}
	}
	return l
}

// inRanges reports whether num is in one of the ranges, "*" being last.
func inRanges(num, last uint32, ranges []numRange) bool {
	for _, r := range ranges {
		lo, hi := star(r.start, last), star(r.stop, last)
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo <= num && num <= hi {
			return true
		}
	}
	return false
}
