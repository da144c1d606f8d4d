package main

import "strings"

// letterTok is a tokenizer whose tokens are the letters a..z (ids 2..27);
// ids 0 and 1 are special.
type letterTok struct{}

func (letterTok) Encode(s string, _ bool) []int32 {
	ids := make([]int32, 0, len(s))
	for _, r := range s {
		ids = append(ids, int32(r-'a')+2)
	}
	return ids
}

func (letterTok) Decode(ids []int32, skip bool) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 2 {
			b.WriteRune(rune(id-2) + 'a')
		}
	}
	return b.String()
}

func (letterTok) VocabSize() int          { return 28 }
func (letterTok) IsSpecial(id int32) bool { return id < 2 }
