package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// LoadConfig shapes the arrival of requests.
type LoadConfig struct {
	// Concurrency caps requests in flight (0: no cap).
	Concurrency int
	// RequestRate is the mean arrival rate in requests/s (0 or +Inf: all at
	// once, limited only by Concurrency).
	RequestRate float64
	// Burstiness is the shape of the gamma-distributed inter-arrival times:
	// 1 is a Poisson process, lower is burstier, higher is more regular,
	// +Inf a constant gap of 1/RequestRate. The zero value stands for 1;
	// negative values and NaN are refused.
	Burstiness float64
	// Duration stops issuing new requests after this long (0: no limit).
	Duration time.Duration
	// Warmup is how many of the prompts, the first ones, are sent first,
	// one at a time, and not measured: Run measures prompts[Warmup:].
	Warmup int
	// WarmedUp, when set, is called once the warm-up requests are done,
	// before the first measured one is sent (by Compare, once, after both
	// targets' warm-ups): the place to read server-side counters that
	// should cover the measured requests only.
	WarmedUp func()
	Seed     uint64
	// Progress, when set, is called after each measured request completes.
	Progress func(done, total int)
}

// Validate reports a request rate or burstiness that Run refuses.
func (c LoadConfig) Validate() error {
	if math.IsNaN(c.RequestRate) || c.RequestRate < 0 {
		return fmt.Errorf("bench: request rate %v: want a rate >= 0 (0 or +Inf: all at once)", c.RequestRate)
	}
	if math.IsNaN(c.Burstiness) || c.Burstiness < 0 {
		return fmt.Errorf("bench: burstiness %v: want a positive gamma shape", c.Burstiness)
	}
	return nil
}

// ArrivalTimes returns when each of n requests is sent, as offsets from the
// start of the run, the way vllm bench serve schedules them: the gaps
// between requests are gamma-distributed with shape burstiness and mean
// 1/rate (a constant 1/rate when burstiness is +Inf), and their running
// sum is rescaled so that the last request goes out at exactly n/rate,
// which keeps the offered load of a run from depending on the seed. All
// offsets are zero when the rate is 0 or +Inf. It fails for a burstiness
// <= 0 or NaN and for a negative or NaN rate.
func ArrivalTimes(n int, rate, burstiness float64, seed uint64) ([]time.Duration, error) {
	if !(burstiness > 0) {
		return nil, fmt.Errorf("bench: burstiness %v: want a positive gamma shape", burstiness)
	}
	if !(rate >= 0) {
		return nil, fmt.Errorf("bench: request rate %v: want a rate >= 0 (0 or +Inf: all at once)", rate)
	}
	times := make([]time.Duration, n)
	if n == 0 || rate == 0 || math.IsInf(rate, 1) {
		return times, nil
	}
	cum := make([]float64, n) // seconds
	r := rand.New(rand.NewPCG(seed, 0xa77))
	scale := 1 / (rate * burstiness)
	sum := 0.0
	for i := range cum {
		if math.IsInf(burstiness, 1) {
			sum += 1 / rate
		} else {
			sum += gammaSample(r, burstiness) * scale
		}
		cum[i] = sum
	}
	if sum > 0 {
		norm := float64(n) / rate / sum
		for i := range cum {
			cum[i] *= norm
		}
	}
	for i, s := range cum {
		times[i] = time.Duration(s * float64(time.Second))
	}
	return times, nil
}

// gammaSample draws from Gamma(shape, 1) by Marsaglia and Tsang's method
// (with the shape < 1 boost).
func gammaSample(r *rand.Rand, shape float64) float64 {
	if shape < 1 {
		u := r.Float64()
		return gammaSample(r, shape+1) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// Sender sends one prompt and measures it (Client.Do).
type Sender func(ctx context.Context, p Prompt) Result

// Run sends the first cfg.Warmup prompts one at a time, unmeasured, then
// the rest with the given arrival process, and returns one Result per
// measured request issued (in the order of prompts[cfg.Warmup:]; fewer
// when Duration cut the run short) and the wall time of the measured part.
// It fails, sending nothing, when cfg does not Validate.
func Run(ctx context.Context, send Sender, prompts []Prompt, cfg LoadConfig) ([]Result, time.Duration, error) {
	if err := cfg.Validate(); err != nil {
		return nil, 0, err
	}
	if cfg.Burstiness == 0 {
		cfg.Burstiness = 1
	}
	warm := prompts[:min(max(cfg.Warmup, 0), len(prompts))]
	prompts = prompts[len(warm):]
	times, err := ArrivalTimes(len(prompts), cfg.RequestRate, cfg.Burstiness, cfg.Seed)
	if err != nil {
		return nil, 0, err
	}
	for _, p := range warm {
		if ctx.Err() != nil {
			break
		}
		send(ctx, p)
	}
	if cfg.WarmedUp != nil {
		cfg.WarmedUp()
	}
	var sem chan struct{}
	if cfg.Concurrency > 0 {
		sem = make(chan struct{}, cfg.Concurrency)
	}
	results := make([]Result, len(prompts))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	start := time.Now()
	issued := 0
	for i, p := range prompts {
		if cfg.Duration > 0 && time.Since(start) >= cfg.Duration {
			break
		}
		if !sleepUntil(ctx, start.Add(times[i])) {
			break
		}
		if sem != nil {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
		}
		issued++
		wg.Add(1)
		go func(i int, p Prompt) {
			defer wg.Done()
			results[i] = send(ctx, p)
			if sem != nil {
				<-sem
			}
			if cfg.Progress != nil {
				mu.Lock()
				done++
				cfg.Progress(done, len(prompts))
				mu.Unlock()
			}
		}(i, p)
	}
	wg.Wait()
	return results[:issued], time.Since(start), nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
