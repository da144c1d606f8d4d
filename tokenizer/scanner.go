package tokenizer

func knownScanner(pattern string) matcher { return nil }
