package sample

import "slices"

func sortCanonicalLarge(c []cand) {
	slices.SortFunc(c, func(a, b cand) int {
		switch {
		case before(&a, &b):
			return -1
		case before(&b, &a):
			return 1
		}
		return 0
	})
}
