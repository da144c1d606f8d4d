package server

import (
	"net/http"
)

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req TokenizeRequest
	m, aerr := s.readRequest(w, r, &req, &req.Model)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var ids []int32
	switch {
	case req.Prompt != nil && req.Messages != nil:
		aerr = badRequest("prompt", "give either prompt or messages, not both.")
	case req.Prompt != nil:
		add := true
		if req.AddSpecialTokens != nil {
			add = *req.AddSpecialTokens
		}
		var err error
		if ids, err = m.Tokenizer.Encode(*req.Prompt, add); err != nil {
			aerr = badRequest("prompt", "could not tokenize the prompt: %v", err)
		}
	case req.Messages != nil:
		add := false
		if req.AddSpecialTokens != nil {
			add = *req.AddSpecialTokens
		}
		ids, aerr = renderMessages(m.Tokenizer, req.Messages, chatOptions(req.AddGenerationPrompt, req.ContinueFinalMessage), add)
	default:
		aerr = badRequest("prompt", "prompt or messages is required.")
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if ids == nil {
		ids = []int32{}
	}
	resp := TokenizeResponse{Count: len(ids), MaxModelLen: m.MaxModelLen, Tokens: ids}
	if req.ReturnTokenStrs {
		resp.TokenStrs = make([]string, len(ids))
		piece := m.Tokenizer.TokenText
		if p, ok := m.Tokenizer.(interface{ TokenPiece(int32) string }); ok {
			piece = p.TokenPiece
		}
		for i, id := range ids {
			resp.TokenStrs[i] = piece(id)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	var req DetokenizeRequest
	m, aerr := s.readRequest(w, r, &req, &req.Model)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	vocab := m.Tokenizer.VocabSize()
	for _, id := range req.Tokens {
		if id < 0 || int(id) >= vocab {
			writeError(w, badRequest("tokens", "token id %d is out of vocabulary [0, %d).", id, vocab))
			return
		}
	}
	text, err := m.Tokenizer.Decode(req.Tokens, false)
	if err != nil {
		writeError(w, badRequest("tokens", "could not decode: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, DetokenizeResponse{Prompt: text})
}
