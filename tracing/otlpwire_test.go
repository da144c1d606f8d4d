package tracing

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestSizedMessagesAreCanonical: whatever length bytes were reserved, a
// closed message is the canonical encoding of its field (shortest length
// varint), with the bytes before it untouched.
func TestSizedMessagesAreCanonical(t *testing.T) {
	for _, reserved := range []int{1, 2, 3, 4} {
		for _, n := range []int{0, 1, 127, 128, 300, 16383, 16384, 1<<21 + 5} {
			body := bytes.Repeat([]byte{0xab}, n)
			prefix := []byte{1, 2, 3}
			b, mark := openSizedMessage(append([]byte(nil), prefix...), spanEvents, reserved)
			b = closeSizedMessage(append(b, body...), mark, reserved)
			want := protowire.AppendBytes(protowire.AppendTag(append([]byte(nil), prefix...), spanEvents, protowire.BytesType), body)
			require.True(t, bytes.Equal(want, b), "%d length bytes reserved, body of %d", reserved, n)
		}
	}
}
