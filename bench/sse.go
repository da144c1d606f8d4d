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
type SSEReader struct {
	r   *bufio.Reader
	buf bytes.Buffer
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
		line, err := s.r.ReadBytes('\n')
		if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
			if errors.Is(err, io.EOF) {
				if haveData {
					return s.buf.Bytes(), io.ErrUnexpectedEOF
				}
				return nil, io.EOF
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if haveData {
				return s.buf.Bytes(), nil
			}
			if err != nil {
				return nil, io.EOF
			}
			continue
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
		if err != nil {
			return s.buf.Bytes(), io.ErrUnexpectedEOF
		}
	}
}
