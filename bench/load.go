package bench

import (
	"context"
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
	// 1 is a Poisson process, lower is burstier, higher is more regular.
	Burstiness float64
	// Duration stops issuing new requests after this long (0: no limit).
	Duration time.Duration
	// Warmup requests are sent first, one at a time, and not measured.
	Warmup int
	Seed   uint64
	// Progress, when set, is called after each measured request completes.
	Progress func(done, total int)
}

// Arrivals returns the n inter-arrival gaps for rate and burstiness:
// gamma-distributed with shape burstiness and mean 1/rate (all zero when the
// rate is 0 or infinite).
func Arrivals(n int, rate, burstiness float64, seed uint64) []time.Duration {
	gaps := make([]time.Duration, n)
	if rate <= 0 || math.IsInf(rate, 1) {
		return gaps
	}
	if burstiness <= 0 {
		burstiness = 1
	}
	r := rand.New(rand.NewPCG(seed, 0xa77))
	scale := 1 / (rate * burstiness)
	for i := range gaps {
		gaps[i] = time.Duration(gammaSample(r, burstiness) * scale * float64(time.Second))
	}
	return gaps
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

// Run sends the prompts with the given arrival process and returns one
// Result per request issued (fewer than len(prompts) when Duration cut the
// run short) and the wall time of the measured part.
func Run(ctx context.Context, send Sender, prompts []Prompt, cfg LoadConfig) ([]Result, time.Duration) {
	for i := 0; i < cfg.Warmup && i < len(prompts) && ctx.Err() == nil; i++ {
		send(ctx, prompts[i])
	}
	gaps := Arrivals(len(prompts), cfg.RequestRate, cfg.Burstiness, cfg.Seed)
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
	next := start
	issued := 0
	for i, p := range prompts {
		if cfg.Duration > 0 && time.Since(start) >= cfg.Duration {
			break
		}
		next = next.Add(gaps[i])
		if !sleepUntil(ctx, next) {
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
	return results[:issued], time.Since(start)
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
