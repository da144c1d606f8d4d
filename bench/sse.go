package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// SSEReader reads the data fields of a server-sent event stream, one event
// at a time. Comment lines and fields other than data are skipped; the data
// lines of one event are joined with "\n" as the SSE specification says.
// Lines end with CRLF, LF or a lone CR, as the specification allows.
type SSEReader struct {
	r   *bufio.Reader
	buf bytes.Buffer

	// The rest of the chunk read up to the last LF, after a lone CR ended
	// a line within it (see readLine).
	chunk           []byte
	inChunk         bool
	chunkTerminated bool // the chunk ended with LF (else at the end of the stream)
}

// NewSSEReader reads events from r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the data of the next event. It returns io.EOF at the end of
// the stream; an event cut off by the end of the stream is returned with
// io.ErrUnexpectedEOF.
func (s *SSEReader) Next() ([]byte, error) {
	s.buf.Reset()
	haveData := false
	for {
		line, terminated, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if haveData {
					return s.buf.Bytes(), io.ErrUnexpectedEOF
				}
				return nil, io.EOF
			}
			return nil, err
		}
		if len(line) == 0 {
			if haveData && terminated {
				return s.buf.Bytes(), nil
			}
			continue // a blank line, or nothing before the end of the stream
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if !bytes.Equal(field, []byte("data")) {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if haveData {
			s.buf.WriteByte('\n')
		}
		s.buf.Write(value)
		haveData = true
		if !terminated {
			return s.buf.Bytes(), io.ErrUnexpectedEOF
		}
	}
}

// readLine returns the next line without its end (CRLF, LF or CR), and
// whether it had one: the stream's last line may not. At the end of the
// stream it returns io.EOF. Lines are read up to each LF, and a chunk so
// read is split at its lone CRs.
func (s *SSEReader) readLine() (line []byte, terminated bool, err error) {
	if !s.inChunk {
		chunk, err := s.r.ReadBytes('\n')
		if err != nil && (len(chunk) == 0 || !errors.Is(err, io.EOF)) {
			return nil, false, err
		}
		s.chunkTerminated = err == nil
		if s.chunkTerminated {
			chunk = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte("\r"))
		}
		s.chunk, s.inChunk = chunk, true
	}
	if i := bytes.IndexByte(s.chunk, '\r'); i >= 0 {
		line, s.chunk = s.chunk[:i], s.chunk[i+1:]
		return line, true, nil
	}
	s.inChunk = false
	return s.chunk, s.chunkTerminated, nil
}
