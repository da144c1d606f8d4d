package model

import (
	"testing"
)

func BenchmarkGenerate(b *testing.B) {
	for _, name := range []string{"15M", "110M"} {
		b.Run(name, func(b *testing.B) {
			s, _ := SpecByName(name)
			for i := 0; i < b.N; i++ {
				if err := Generate(b.TempDir(), s, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(s.withDefaults().configParams()*4*int64(b.N))/b.Elapsed().Seconds()/1e6, "MB/s")
		})
	}
}
