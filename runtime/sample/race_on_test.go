//go:build race

package sample

// raceEnabled: the race detector allocates, so allocation counts are not checked.
const raceEnabled = true
