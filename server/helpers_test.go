package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/engine"
	"github.com/vserve/vserve/engine/enginetest"
	"github.com/vserve/vserve/scheduler"
	"github.com/vserve/vserve/server"
)

// byteTokenizer maps byte b to id b+3 (0 pad, 1 BOS, 2 EOS).
type byteTokenizer struct{}

const (
	bosID = 1
	eosID = 2
)

func (byteTokenizer) Encode(text string, addSpecial bool) ([]int32, error) {
	var ids []int32
	if addSpecial {
		ids = append(ids, bosID)
	}
	for i := 0; i < len(text); i++ {
		ids = append(ids, int32(text[i])+3)
	}
	return ids, nil
}

func (byteTokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	var b []byte
	for _, id := range ids {
		if id < 3 {
			if !skipSpecial {
				b = append(b, []string{"<pad>", "<s>", "</s>"}[id]...)
			}
			continue
		}
		b = append(b, byte(id-3))
	}
	return string(b), nil
}

func (t byteTokenizer) TokenText(id int32) string {
	s, _ := t.Decode([]int32{id}, false)
	return s
}

type byteDecoder struct {
	skip bool
	buf  []byte
}

func (d *byteDecoder) Add(id int32) string {
	if id < 3 {
		return ""
	}
	d.buf = append(d.buf, byte(id-3))
	if !utf8.Valid(d.buf) && len(d.buf) < 4 {
		return ""
	}
	s := string(d.buf)
	d.buf = d.buf[:0]
	return s
}

func (d *byteDecoder) Flush() string {
	s := string(d.buf)
	d.buf = d.buf[:0]
	return s
}

func (byteTokenizer) NewDecoder(_ []int32, skip bool) server.Decoder { return &byteDecoder{skip: skip} }

func (byteTokenizer) RenderChat(msgs []server.ChatMessage, o server.ChatOptions) (string, error) {
	var sb strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&sb, "%s: %s\n", m.Role, m.Content.Text)
	}
	if o.AddGenerationPrompt {
		sb.WriteString("assistant:")
	}
	return sb.String(), nil
}

func (byteTokenizer) EOSTokenIDs() []int32 { return []int32{eosID} }
func (byteTokenizer) VocabSize() int       { return 259 }

// letters makes the fake model write "abcd...zabc...": token 100+i%26 is
// byte 97+i%26.
var letters = enginetest.DefaultNext

type harness struct {
	t        testing.TB
	srv      *server.Server
	http     *httptest.Server
	eng      *engine.Engine
	sched    *scheduler.Scheduler
	exec     *enginetest.FakeExecutor
	priority bool
	defaults server.SamplingDefaults
}

type harnessOpts struct {
	server      server.Options
	engine      engine.Config
	maxModelLen int
	numBlocks   int
	maxNumSeqs  int
	exec        engine.Executor
	noModel     bool
	priority    bool // the scheduler orders by priority
	defaults    server.SamplingDefaults
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	if o.maxModelLen == 0 {
		o.maxModelLen = 256
	}
	if o.numBlocks == 0 {
		o.numBlocks = 1024
	}
	policy := scheduler.PolicyFCFS
	if o.priority {
		policy = scheduler.PolicyPriority
	}
	sched, err := scheduler.New(scheduler.Config{MaxModelLen: o.maxModelLen, NumBlocks: o.numBlocks, BlockSize: 16,
		MaxNumSeqs: o.maxNumSeqs, EnablePrefixCaching: true, MaxNumBatchedTokens: 4096, Policy: policy})
	require.NoError(t, err)
	h := &harness{t: t, sched: sched, exec: &enginetest.FakeExecutor{Next: letters}, priority: o.priority, defaults: o.defaults}
	exec := o.exec
	if exec == nil {
		exec = h.exec
	}
	h.eng = engine.New(o.engine, sched, exec)
	h.srv = server.New(o.server)
	if !o.noModel {
		h.setModel(o.maxModelLen)
	}
	h.http = httptest.NewServer(h.srv)
	t.Cleanup(func() {
		h.http.CloseClientConnections()
		h.http.Close()
		require.NoError(t, h.eng.Shutdown(context.Background()))
	})
	return h
}

func (h *harness) setModel(maxModelLen int) {
	h.srv.SetModel(&server.Model{Engine: h.eng, Tokenizer: byteTokenizer{}, Names: []string{"test-model", "alias"},
		Root: "/models/test", MaxModelLen: maxModelLen, Created: 1700000000, Description: "fake", PriorityScheduling: h.priority,
		Defaults: h.defaults})
}

func (h *harness) do(method, path string, body any, hdr ...string) *http.Response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(h.t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.http.URL+path, rd)
	require.NoError(h.t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.http.Client().Do(req)
	require.NoError(h.t, err)
	return resp
}

// post posts body and decodes the JSON answer into a map.
func (h *harness) post(path string, body any, wantStatus int) map[string]any {
	h.t.Helper()
	resp := h.do("POST", path, body)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	require.Equal(h.t, wantStatus, resp.StatusCode, "body: %s", data)
	var m map[string]any
	require.NoError(h.t, json.Unmarshal(data, &m), "body: %s", data)
	return m
}

// sse posts a streaming request and returns the decoded data events
// (without [DONE]) and whether [DONE] came last.
func (h *harness) sse(path string, body any) (events []map[string]any, done bool) {
	h.t.Helper()
	resp := h.do("POST", path, body)
	defer resp.Body.Close()
	require.Equal(h.t, http.StatusOK, resp.StatusCode)
	require.Equal(h.t, "text/event-stream", resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(h.t, strings.HasPrefix(line, "data: "), "line %q", line)
		payload := strings.TrimPrefix(line, "data: ")
		require.False(h.t, done, "nothing after [DONE]")
		if payload == "[DONE]" {
			done = true
			continue
		}
		var m map[string]any
		require.NoError(h.t, json.Unmarshal([]byte(payload), &m))
		events = append(events, m)
	}
	return events, done
}

// settle waits until the engine holds no request and returns the
// scheduler stats.
func (h *harness) settle() scheduler.Stats {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.eng.Snapshot().NumActive == 0 }, 60e9, 1e6)
	return h.eng.Snapshot().Stats
}
