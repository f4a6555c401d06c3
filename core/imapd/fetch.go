package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/switchyard-mta/switchyard/core/store"
)

// Fetch is FETCH (RFC 9051 §6.4.5). BODY[], BODY[HEADER] and BODY[TEXT],
// partial or not, are sent as the exact stored bytes; other sections,
// BINARY (RFC 3516), ENVELOPE and BODYSTRUCTURE are parsed from the message
// with go-imap's helpers. A body section without .PEEK sets \Seen, except
// in a mailbox opened with EXAMINE, and the new flags are sent along
// (RFC 3501 §6.4.5). A message expunged by another session but not yet
// reported to this one is left out (RFC 2180 §4.1.3).
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer s.begin(&err)()
	v := s.view
	if v == nil {
		return errNoMailbox
	}
	uids, err := s.resolve(numSet)
	if err != nil || len(uids) == 0 {
		return err
	}
	if flagsOnly(options) {
		return s.fetchFlags(w, uids, options)
	}
	msgs, err := v.Messages(s.ctx(), uids)
	if err != nil {
		return s.storeError("fetch", err, imap.ResponseCodeNonExistent)
	}
	seen := map[store.UID]bool{} // Messages whose \Seen this FETCH set.
	if !s.readOnly && setsSeen(options) {
		var unseen []store.UID
		for _, m := range msgs {
			if !m.Seen {
				unseen = append(unseen, m.UID)
			}
		}
		if len(unseen) > 0 {
			res, err := v.StoreFlags(s.ctx(), unseen, store.FlagsAdd, store.Flags{Seen: true}, nil)
			if err != nil {
				return s.storeError("fetch", err, imap.ResponseCodeNonExistent)
			}
			for _, mf := range res {
				seen[mf.UID] = true
			}
			for i := range msgs {
				if seen[msgs[i].UID] {
					msgs[i].Seen = true
				}
			}
		}
	}
	for _, m := range msgs {
		seq := v.Seq(m.UID)
		if seq == 0 {
			continue
		}
		if err := s.fetchMessage(w, seq, m, options, seen[m.UID]); err != nil {
			return err
		}
	}
	return nil
}

// flagsOnly reports whether a FETCH asks for nothing but UID and FLAGS,
// which the store's flag index answers without the message records.
func flagsOnly(o *imap.FetchOptions) bool {
	rest := *o
	rest.UID, rest.Flags = false, false
	return reflect.DeepEqual(rest, imap.FetchOptions{})
}

// fetchFlags writes the FETCH responses with UID and FLAGS of the messages.
func (s *session) fetchFlags(w *imapserver.FetchWriter, uids []store.UID, o *imap.FetchOptions) error {
	flags, err := s.view.Flags(s.ctx(), uids)
	if err != nil {
		return s.storeError("fetch", err, imap.ResponseCodeNonExistent)
	}
	for _, f := range flags {
		seq := s.view.Seq(f.UID)
		if seq == 0 {
			continue
		}
		rw := w.CreateMessage(seq)
		if o.UID {
			rw.WriteUID(imap.UID(f.UID))
		}
		if o.Flags {
			rw.WriteFlags(flagsToIMAP(f.Flags, f.Keywords))
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// setsSeen reports whether a FETCH sets \Seen: it asks for a body section
// or binary section without .PEEK.
func setsSeen(o *imap.FetchOptions) bool {
	for _, bs := range o.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range o.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// fetchMessage writes one message's FETCH response.
func (s *session) fetchMessage(w *imapserver.FetchWriter, seq uint32, m store.Message, o *imap.FetchOptions, flagsChanged bool) (err error) {
	var c *store.Content
	if o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 {
		c, err = s.account.OpenMessage(m)
		if errors.Is(err, store.ErrNotFound) {
			return nil // Expunged meanwhile.
		} else if err != nil {
			s.log.Error("fetch: opening message", slog.Uint64("uid", uint64(m.UID)), slog.Any("err", err))
			return errInternal
		}
		defer c.Close()
	}

	rw := w.CreateMessage(seq)
	defer func() {
		if cerr := rw.Close(); err == nil {
			err = cerr
		}
	}()
	if o.UID {
		rw.WriteUID(imap.UID(m.UID))
	}
	if o.Flags || flagsChanged {
		rw.WriteFlags(flagsToIMAP(m.Flags, m.Keywords))
	}
	if o.InternalDate {
		rw.WriteInternalDate(m.Received)
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if o.Envelope {
		h, err := c.Header()
		if err != nil {
			return err
		}
		// A malformed header yields the fields before the bad line.
		hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(h)))
		rw.WriteEnvelope(imapserver.ExtractEnvelope(hdr))
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(fixBodyStructure(imapserver.ExtractBodyStructure(whole(c))))
	}
	for _, bs := range o.BodySection {
		if err := writeBodySection(rw, c, bs); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		b := imapserver.ExtractBinarySection(whole(c), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), bytes.NewReader(b)); err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(whole(c), bss))
	}
	return nil
}

// whole returns a reader of all of c from its start.
func whole(c *store.Content) io.Reader {
	return io.NewSectionReader(c, 0, c.Size())
}

// writeBodySection writes BODY[section]<partial>. The whole message, its
// header and its text are copied from the file as they are; parts and
// header field selections go through go-imap's ExtractBodySection, which
// reformats header fields.
func writeBodySection(rw *imapserver.FetchResponseWriter, c *store.Content, bs *imap.FetchItemBodySection) error {
	start, end := int64(-1), int64(-1)
	if len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 {
		switch bs.Specifier {
		case imap.PartSpecifierNone:
			start, end = 0, c.Size()
		case imap.PartSpecifierHeader:
			start, end = 0, c.HeaderSize
		case imap.PartSpecifierText:
			start, end = c.HeaderSize, c.Size()
		}
	}
	if start < 0 {
		b := imapserver.ExtractBodySection(whole(c), bs)
		return writeLiteral(rw.WriteBodySection(bs, int64(len(b))), bytes.NewReader(b))
	}
	if p := bs.Partial; p != nil {
		// RFC 9051 §6.4.5: from octet Offset, at most Size octets.
		start = min(start+p.Offset, end)
		end = min(start+p.Size, end)
	}
	return writeLiteral(rw.WriteBodySection(bs, end-start), io.NewSectionReader(c, start, end-start))
}

// writeLiteral copies r, exactly the literal's size, to the literal.
func writeLiteral(wc io.WriteCloser, r io.Reader) error {
	_, err := io.Copy(wc, r)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// fixBodyStructure works around go-imap's ExtractBodyStructure, whose
// result it changes in place and returns:
//   - a multipart whose boundary never occurs has no parts, and go-imap
//     panics writing it (body-type-mpart needs one, RFC 9051 §9): it gets
//     one empty text/plain part;
//   - an unparsable Content-Type becomes the whole header value as type:
//     it is cut at the first parameter, or if still empty becomes
//     application/octet-stream;
//   - text without a charset parameter gets charset us-ascii, its default
//     (RFC 2046 §4.1.2), as RFC 9051 §7.5.2 shows it.
func fixBodyStructure(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(b.Children) == 0 {
			b.Children = []imap.BodyStructure{&imap.BodyStructureSinglePart{
				Type:     "text",
				Subtype:  "plain",
				Params:   map[string]string{"charset": "us-ascii"},
				Text:     &imap.BodyStructureText{},
				Extended: &imap.BodyStructureSinglePartExt{},
			}}
		}
		for i, child := range b.Children {
			b.Children[i] = fixBodyStructure(child)
		}
	case *imap.BodyStructureSinglePart:
		sub, _, _ := strings.Cut(b.Subtype, ";")
		b.Subtype = strings.ToLower(strings.TrimSpace(sub))
		b.Type = strings.ToLower(strings.TrimSpace(b.Type))
		if b.Type == "" || b.Subtype == "" {
			b.Type, b.Subtype, b.Text = "application", "octet-stream", nil
		}
		if b.Type == "text" && b.Text == nil {
			b.Text = &imap.BodyStructureText{} // Line count unknown.
		}
		if b.Type == "text" && b.Params["charset"] == "" {
			if b.Params == nil {
				b.Params = map[string]string{}
			}
			b.Params["charset"] = "us-ascii"
		}
		if b.MessageRFC822 != nil {
			b.MessageRFC822.BodyStructure = fixBodyStructure(b.MessageRFC822.BodyStructure)
		}
	}
	return bs
}
