package tokenizer_test

import (
	"fmt"
	"log"

	"github.com/vserve/vserve/tokenizer"
)

// The examples use testdata/tiny, a small SentencePiece-style tokenizer
// with byte fallback written in the standard Hugging Face format.

func ExampleLoadDir() {
	tok, err := tokenizer.LoadDir("testdata/tiny")
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("abc a ü", true)
	fmt.Println(ids)
	fmt.Printf("%q\n", tok.Decode(ids, true))
	bos, _ := tok.BOSTokenID()
	fmt.Println("bos", bos, "eos", tok.EOSTokenIDs())
	// Output:
	// [1 267 263 259 198 191]
	// "abc a ü"
	// bos 1 eos [2 5]
}

func ExampleTokenizer_NewIncrementalDecoder() {
	tok, err := tokenizer.LoadDir("testdata/tiny")
	if err != nil {
		log.Fatal(err)
	}
	prompt := tok.Encode("abc", true)
	generated := tok.Encode("abc a ü", true)[len(prompt):]
	d := tok.NewIncrementalDecoder(prompt, true)
	for _, id := range generated {
		// " ü" is "▁" and two byte tokens: the space comes at once, the
		// character only when both of its bytes are there.
		fmt.Printf("%q ", d.Add(id))
	}
	fmt.Printf("%q\n", d.Flush())
	// Output: " a" " " "" "ü" ""
}

func ExampleStopMatcher() {
	m := tokenizer.NewStopMatcher([]string{"</answer>"})
	for _, delta := range []string{"42 is the", " answer</", "ans", "wer> and more"} {
		emit, stopped := m.Push(delta)
		fmt.Printf("%q %v\n", emit, stopped)
		if stopped {
			break
		}
	}
	// Output:
	// "42 is the" false
	// " answer" false
	// "" false
	// "" true
}

func ExampleChatTemplate_Render() {
	tok, err := tokenizer.LoadDir("testdata/tiny")
	if err != nil {
		log.Fatal(err)
	}
	prompt, err := tok.ApplyChatTemplate([]tokenizer.ChatMessage{
		{Role: "system", Content: "  Be brief. "},
		{Role: "user", Content: "Hi"},
		{Role: "assistant", Content: "Hello"},
		{Role: "user", Content: "Bye"},
	}, tokenizer.RenderOptions{AddGenerationPrompt: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(prompt)
	// Output:
	// <s>[SYS]Be brief.[/SYS]
	// <user>Hi
	// <assistant>Hello</s>
	// <user>Bye
	// <assistant>
}

func ExampleLoadChatTemplate() {
	c, err := tokenizer.LoadChatTemplate(
		"{% for m in messages %}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}")
	if err != nil {
		log.Fatal(err)
	}
	out, err := c.Render([]tokenizer.ChatMessage{{Role: "user", Content: "ping"}}, tokenizer.RenderOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(out)
	// Output: USER: ping
}
