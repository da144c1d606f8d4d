package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vserve/vserve/bench"
	"github.com/vserve/vserve/internal/sharedtest"
)

// Every command must define its flags without clashes and answer -h.
func TestCommandsParseHelp(t *testing.T) {
	stderr := os.Stderr
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	os.Stderr = devnull
	defer func() { os.Stderr = stderr }()
	for name, cmd := range map[string]func(context.Context, []string) error{
		"run": cmdRun, "compare": cmdCompare, "sweep": cmdSweep, "report": cmdReport,
	} {
		if err := cmd(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: got %v, want flag.ErrHelp", name, err)
		}
	}
}

// Bad flag values are refused, each for its own reason (checked by the
// message, since a command without a server or tokenizer fails anyway).
func TestBadFlagValues(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  func(context.Context, []string) error
		args []string
		want string
	}{
		{cmdSweep, []string{"--concurrency", "1,x"}, "concurrency list"},
		{cmdRun, []string{"--endpoint-type", "embeddings"}, "--endpoint-type"},
		{cmdRun, []string{"--dataset", "nope", "--tokenizer", ""}, "--dataset"},
		{cmdCompare, nil, "--compare-url"},
		{cmdRun, []string{"--burstiness", "0"}, "--burstiness"},
		{cmdRun, []string{"--burstiness", "-1"}, "--burstiness"},
		{cmdRun, []string{"--burstiness", "NaN"}, "--burstiness"},
		{cmdSweep, []string{"--burstiness", "0"}, "--burstiness"},
		{cmdCompare, []string{"--burstiness", "0", "--compare-url", "http://127.0.0.1:1"}, "--burstiness"},
		{cmdRun, []string{"--request-rate", "0"}, "--request-rate"},
		{cmdRun, []string{"--request-rate", "-2"}, "--request-rate"},
	} {
		err := tc.cmd(ctx, tc.args)
		if assert.Error(t, err, "%v", tc.args) {
			assert.Contains(t, err.Error(), tc.want, "%v", tc.args)
		}
	}
}

// parseCommon parses args with the flags every command shares.
func parseCommon(t *testing.T, args ...string) *common {
	t.Helper()
	var c common
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &c
}

// The flags reach the client.
func TestClientFromFlags(t *testing.T) {
	type flagCase struct {
		args        []string
		timeout     time.Duration
		tokenizer   bool
		ignoreEOS   bool
		temperature *float64
	}
	zero, half := 0.0, 0.5
	cases := []flagCase{
		{nil, 6 * time.Hour, false, true, nil}, // random: ignore_eos, as in vLLM
		{[]string{"--request-timeout", "90s"}, 90 * time.Second, false, true, nil},
		{[]string{"--request-timeout", "0"}, 0, false, true, nil},
		{[]string{"--dataset", "sharegpt"}, 6 * time.Hour, false, false, nil},
		{[]string{"--dataset", "shared-prefix", "--ignore-eos"}, 6 * time.Hour, false, true, nil},
		{[]string{"--temperature", "0"}, 6 * time.Hour, false, true, &zero},
		{[]string{"--temperature", "0.5", "--dataset", "sharegpt"}, 6 * time.Hour, false, false, &half},
	}
	if dir := sharedtest.Dir("models", "stories260K", "hf"); dir != "" {
		cases = append(cases, flagCase{[]string{"--tokenizer", dir}, 6 * time.Hour, true, true, nil})
	}
	for _, tc := range cases {
		c := parseCommon(t, tc.args...)
		cl, err := c.client(bench.Target{Name: "t", BaseURL: "http://127.0.0.1:1"}, 1)
		require.NoError(t, err)
		assert.Equal(t, tc.timeout, cl.Timeout, "%v", tc.args)
		assert.Equal(t, tc.tokenizer, cl.Tokenizer != nil, "%v: tokenizer", tc.args)
		assert.Equal(t, tc.ignoreEOS, cl.IgnoreEOS, "%v: ignore_eos", tc.args)
		assert.Equal(t, tc.temperature, cl.Temperature, "%v: temperature", tc.args)
	}
	assert.Zero(t, parseCommon(t).concurrency, "no concurrency cap by default, as in vLLM")
}

// --random-output-len replaces the ShareGPT reference lengths when it is
// given, even with a tokenizer (it was ignored then); without a tokenizer
// its value (default 128) is the only length there is.
func TestShareGPTOutputLen(t *testing.T) {
	for _, tc := range []struct {
		args []string
		tok  bool
		want int
	}{
		{nil, true, 0},
		{nil, false, 128},
		{[]string{"--random-output-len", "32"}, true, 32},
		{[]string{"--random-output-len", "32"}, false, 32},
		{[]string{"--random-output-len", "0"}, true, 0},
	} {
		c := parseCommon(t, tc.args...)
		assert.Equal(t, tc.want, c.shareGPTOutputLen(tc.tok), "%v, tokenizer %v", tc.args, tc.tok)
	}
}

// Every dataset gives --num-prompts measured prompts plus --warmup: the
// shared-prefix one rounded up to whole groups (9 gave 10).
func TestPromptCount(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--num-prompts", "9", "--warmup", "0"}, 9},
		{[]string{"--num-prompts", "9", "--warmup", "2"}, 11},
		{[]string{"--dataset", "shared-prefix", "--num-prompts", "9", "--warmup", "0", "--prefix-groups", "4", "--prefix-len", "8", "--suffix-len", "4"}, 9},
		{[]string{"--dataset", "shared-prefix", "--num-prompts", "9", "--warmup", "2", "--prefix-groups", "4", "--prefix-len", "8", "--suffix-len", "4"}, 11},
		{[]string{"--dataset", "shared-prefix", "--num-prompts", "6", "--warmup", "2", "--prefix-groups", "4", "--prefix-len", "8", "--suffix-len", "4"}, 8},
	} {
		c := parseCommon(t, append(tc.args, "--random-input-len", "8", "--random-output-len", "4")...)
		c.tok = letterTok{}
		ps, err := c.prompts()
		require.NoError(t, err, "%v", tc.args)
		assert.Len(t, ps, tc.want, "%v", tc.args)
	}
}

// A sweep gives every level, and its warm-up, prompts of its own: it sent
// the same ones at every level, so that every level after the first mostly
// hit the server's prefix cache.
func TestSweepLevelsHaveTheirOwnPrompts(t *testing.T) {
	for _, dataset := range []string{"random", "shared-prefix"} {
		t.Run(dataset, func(t *testing.T) {
			srv := newFakeServer(t)
			c := parseCommon(t, "--base-url", srv.URL, "--dataset", dataset, "--num-prompts", "5", "--warmup", "2", "--no-progress",
				"--random-input-len", "8", "--random-output-len", "2", "--prefix-groups", "2", "--prefix-len", "8", "--suffix-len", "4")
			c.tok = letterTok{}
			tgt, err := c.target(c.baseURL, "fake")
			require.NoError(t, err)
			client, err := c.client(tgt, 4)
			require.NoError(t, err)
			require.NoError(t, client.ResolveModel(context.Background()))
			pts, err := sweep(context.Background(), c, client, []int{1, 2, 4})
			require.NoError(t, err)
			require.Len(t, pts, 3)
			got := srv.received()
			require.Len(t, got, 3*(5+2))
			seen := map[string]int{}
			for i, p := range got {
				if j, dup := seen[p]; dup {
					t.Errorf("request %d repeats the prompt of request %d", i, j)
				}
				seen[p] = i
			}
			for _, p := range pts {
				assert.Equal(t, 5, p.Summary.Completed, "concurrency %d", p.Concurrency)
			}
		})
	}
}

// The sets of promptSets share no prompt, and, for shared-prefix, no system
// prompt either; each has the count asked for.
func TestPromptSetsDisjoint(t *testing.T) {
	dir := t.TempDir()
	var conv []string
	for i := range 40 {
		q := strings.Repeat(string(rune('a'+i%26)), 4+i) // distinct questions
		conv = append(conv, fmt.Sprintf(`{"conversations":[{"from":"human","value":%q},{"from":"gpt","value":"abcdef"}]}`, q))
	}
	sharegpt := filepath.Join(dir, "sg.json")
	require.NoError(t, os.WriteFile(sharegpt, []byte("["+strings.Join(conv, ",")+"]"), 0o644))
	for _, dataset := range []string{"random", "sharegpt", "shared-prefix"} {
		t.Run(dataset, func(t *testing.T) {
			c := parseCommon(t, "--dataset", dataset, "--sharegpt-path", sharegpt, "--random-input-len", "6",
				"--prefix-groups", "3", "--prefix-len", "10", "--suffix-len", "3")
			c.tok = letterTok{}
			counts := []int{4, 7, 5}
			sets, err := c.promptSets(counts)
			require.NoError(t, err)
			require.Len(t, sets, len(counts))
			texts, systems := map[string]int{}, map[string]int{}
			for i, set := range sets {
				require.Len(t, set, counts[i])
				for _, p := range set {
					if j, ok := texts[p.Text]; ok && j != i {
						t.Errorf("sets %d and %d share a prompt", j, i)
					}
					texts[p.Text] = i
					if p.System != "" {
						if j, ok := systems[p.System]; ok && j != i {
							t.Errorf("sets %d and %d share a system prompt", j, i)
						}
						systems[p.System] = i
					}
				}
			}
			_, err = c.promptSets([]int{30, 30})
			if dataset == "sharegpt" {
				assert.Error(t, err, "40 conversations cannot make 60 distinct prompts")
			}
		})
	}
}

// fakeClient returns the flags' client of a fake server.
func fakeClient(t *testing.T, c *common, srv *fakeServer, name string) *bench.Client {
	t.Helper()
	tgt, err := c.target(srv.URL, name)
	require.NoError(t, err)
	cl, err := c.client(tgt, 4)
	require.NoError(t, err)
	require.NoError(t, cl.ResolveModel(context.Background()))
	return cl
}

// The server counters a run reports cover its measured requests only: they
// were read before the warm-up, which they then included. The fake server
// counts finished completions in the counter read as preemptions.
func TestServerCountersAfterWarmup(t *testing.T) {
	for _, warmup := range []int{0, 3} {
		args := []string{"--num-prompts", "5", "--warmup", fmt.Sprint(warmup), "--no-progress", "--random-input-len", "8", "--random-output-len", "2", "--max-concurrency", "2"}
		t.Run(fmt.Sprintf("run, warm-up %d", warmup), func(t *testing.T) {
			srv := newFakeServer(t)
			c := parseCommon(t, args...)
			c.tok = letterTok{}
			prompts, err := c.prompts()
			require.NoError(t, err)
			s, _, err := runOne(context.Background(), c, fakeClient(t, c, srv, "a"), prompts, c.load(c.measuredCount(prompts)))
			require.NoError(t, err)
			require.True(t, s.ServerMetricsOK)
			assert.Equal(t, 5, s.Completed)
			assert.Equal(t, 5.0, s.Preemptions, "the counter covers the 5 measured requests")
			assert.Len(t, srv.received(), 5+warmup)
			// The setup is recorded as vLLM records it.
			assert.Equal(t, "m", s.ModelID)
			assert.Equal(t, "openai", s.Backend)
			assert.Equal(t, 5, s.NumPrompts)
			assert.True(t, math.IsInf(float64(s.OfferedRate), 1))
			assert.Equal(t, 1.0, s.Burstiness)
			assert.Equal(t, new(2), s.MaxConcurrency)
		})
		t.Run(fmt.Sprintf("compare, warm-up %d", warmup), func(t *testing.T) {
			srvA, srvB := newFakeServer(t), newFakeServer(t)
			c := parseCommon(t, args...)
			c.tok = letterTok{}
			prompts, err := c.prompts()
			require.NoError(t, err)
			sa, sb, _, _, err := compare(context.Background(), c, fakeClient(t, c, srvA, "a"), fakeClient(t, c, srvB, "b"), prompts, 2)
			require.NoError(t, err)
			for _, s := range []bench.Summary{sa, sb} {
				require.True(t, s.ServerMetricsOK, s.Target)
				assert.Equal(t, 5, s.Completed, s.Target)
				assert.Equal(t, 5.0, s.Preemptions, "%s: the counter covers the 5 measured requests", s.Target)
			}
			assert.Len(t, srvA.received(), 5+warmup)
			assert.Len(t, srvB.received(), 5+warmup)
		})
	}
}
