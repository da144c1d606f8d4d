package bench

import (
	"context"
	"time"
)

// Compare runs the same prompts against two targets, interleaved so that
// both see the same machine conditions: the prompts are cut into rounds and
// the rounds alternate in ABBA order. It returns each target's results and
// the summed wall time of its rounds. It fails, sending nothing, when cfg
// does not Validate.
func Compare(ctx context.Context, a, b Sender, prompts []Prompt, cfg LoadConfig, rounds int) (ra, rb []Result, da, db time.Duration, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, 0, 0, err
	}
	if rounds < 1 {
		rounds = 1
	}
	// The first cfg.Warmup prompts warm both targets up and are not measured.
	warm := prompts[:min(cfg.Warmup, len(prompts))]
	prompts = prompts[len(warm):]
	cfg.Warmup = 0
	warmedUp := cfg.WarmedUp
	cfg.WarmedUp = nil
	if len(warm) > 0 {
		for _, send := range []Sender{a, b} {
			if _, _, err := Run(ctx, send, warm, LoadConfig{Concurrency: 1}); err != nil {
				return nil, nil, 0, 0, err
			}
		}
	}
	if warmedUp != nil {
		warmedUp()
	}
	per := (len(prompts) + rounds - 1) / rounds
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		lo := r * per
		hi := min(lo+per, len(prompts))
		if lo >= hi {
			break
		}
		chunk := prompts[lo:hi]
		first, second := a, b
		if r%2 == 1 {
			first, second = b, a
		}
		res1, d1, err := Run(ctx, first, chunk, cfg)
		if err != nil {
			return nil, nil, 0, 0, err
		}
		res2, d2, err := Run(ctx, second, chunk, cfg)
		if err != nil {
			return nil, nil, 0, 0, err
		}
		if r%2 == 1 {
			res1, res2, d1, d2 = res2, res1, d2, d1
		}
		ra, rb = append(ra, res1...), append(rb, res2...)
		da, db = da+d1, db+d2
	}
	return ra, rb, da, db, nil
}
