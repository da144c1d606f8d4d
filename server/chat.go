package server

import (
	"net/http"
	"time"

	"github.com/vserve/vserve/scheduler"
)

const routeChat = "/v1/chat/completions"

var validRoles = map[string]bool{"system": true, "user": true, "assistant": true, "tool": true, "developer": true}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	s.serveGeneration(w, r, routeChat, s.prepareChat, s.streamChat, s.respondChat)
}

// respondChat writes the non-streaming response of a finished job.
func (s *Server) respondChat(w http.ResponseWriter, span RequestSpan, j *job, texts []string, now time.Time) {
	resp := ChatResponse{ID: j.id, Object: "chat.completion", Created: now.Unix(), Model: j.m.Names[0], Usage: j.usage()}
	for _, c := range j.choices {
		ch := ChatChoice{Index: c.index, Message: ChatResponseMessage{Role: "assistant", Content: texts[c.index]},
			FinishReason: strPtr(c.finish), StopReason: c.stopReason}
		if j.g.numLogprobs >= 0 {
			ch.Logprobs = j.chatLogprobs(c.tokens, c.logprobs)
		}
		resp.Choices = append(resp.Choices, ch)
	}
	if j.g.enginePromptLogprobs >= 0 && len(j.choices) > 0 {
		resp.PromptLogprobs = j.promptLogprobsEntries(j.choices[0].promptLogprobs)
	}
	span.Departed(j.outcome())
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) prepareChat(w http.ResponseWriter, r *http.Request, span RequestSpan, now time.Time) (*job, *APIError) {
	var req ChatRequest
	m, aerr := s.readRequest(w, r, &req, &req.Model)
	if aerr != nil {
		return nil, aerr
	}
	maxTokens := maxTokensField{"max_tokens", req.MaxTokens}
	if req.MaxCompletionTokens != nil {
		maxTokens = maxTokensField{"max_completion_tokens", req.MaxCompletionTokens}
	}
	if aerr := rejectUnsupportedTools(&req); aerr != nil {
		return nil, aerr
	}
	g, aerr := s.parseSampling(m, &req.SamplingFields, maxTokens, now)
	if aerr != nil {
		return nil, aerr
	}
	if req.TopLogprobs != nil {
		if !req.Logprobs && *req.TopLogprobs != 0 { // as in vLLM, 0 asks for nothing
			return nil, badRequest("top_logprobs", "top_logprobs requires logprobs to be true.")
		}
		if *req.TopLogprobs < 0 || *req.TopLogprobs > s.opts.MaxLogprobs {
			return nil, badRequest("top_logprobs", "top_logprobs must be between 0 and %d, got %d.", s.opts.MaxLogprobs, *req.TopLogprobs)
		}
	}
	if req.Logprobs {
		g.numLogprobs = 0
		if req.TopLogprobs != nil {
			g.numLogprobs = *req.TopLogprobs
		}
	}
	if !g.stream {
		g.enginePromptLogprobs = g.promptLogprobs // a stream has no field for them
	}
	if req.ContinueFinalMessage && req.AddGenerationPrompt != nil && *req.AddGenerationPrompt {
		return nil, badRequest("continue_final_message", "Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
	}
	ids, aerr := renderMessages(m.Tokenizer, req.Messages, chatOptions(req.AddGenerationPrompt, req.ContinueFinalMessage), req.AddSpecialTokens)
	if aerr != nil {
		return nil, aerr
	}
	prompts := []prompt{{ids: ids}}
	id := s.ids.next("chatcmpl")
	span.Parsed(requestInfo(id, m, &req.SamplingFields, maxTokens.value, prompts))
	return newJob(s, m, span, id, g, prompts)
}

// chatOptions are the template options: add_generation_prompt (default
// true) unless continue_final_message, which may not be set with an
// explicit add_generation_prompt true (refused before).
func chatOptions(addGen *bool, cont bool) ChatOptions {
	o := ChatOptions{AddGenerationPrompt: true, ContinueFinalMessage: cont}
	if addGen != nil {
		o.AddGenerationPrompt = *addGen
	}
	if cont {
		o.AddGenerationPrompt = false
	}
	return o
}

// renderMessages validates messages, applies the chat template and
// tokenises the result.
func renderMessages(tok Tokenizer, msgs []ChatMessage, opts ChatOptions, addSpecial bool) ([]int32, *APIError) {
	if len(msgs) == 0 {
		return nil, badRequest("messages", "messages must not be empty.")
	}
	for i, m := range msgs {
		if !validRoles[m.Role] {
			return nil, badRequest("messages", "messages[%d].role %q is not one of system, user, assistant, tool, developer.", i, m.Role)
		}
	}
	text, err := tok.RenderChat(msgs, opts)
	if err != nil {
		return nil, badRequest("messages", "could not apply the chat template: %v", err)
	}
	ids, err := tok.Encode(text, addSpecial)
	if err != nil {
		return nil, badRequest("messages", "could not tokenize the conversation: %v", err)
	}
	if len(ids) == 0 {
		return nil, badRequest("messages", "the conversation renders to an empty prompt.")
	}
	return ids, nil
}

func (j *job) chatLogprobs(tokens []int32, lps []scheduler.TokenLogprobs) *ChatLogprobs {
	out := &ChatLogprobs{Content: []ChatLogprob{}}
	tok := j.m.Tokenizer
	for i, id := range tokens {
		if i >= len(lps) {
			break
		}
		text := tok.TokenText(id)
		e := ChatLogprob{Token: text, Logprob: clampLogprob(lps[i].Logprob), Bytes: textBytes(text), TopLogprobs: []ChatTopLogprob{}}
		for _, t := range lps[i].Top {
			tt := tok.TokenText(t.TokenID)
			e.TopLogprobs = append(e.TopLogprobs, ChatTopLogprob{Token: tt, Logprob: clampLogprob(t.Logprob), Bytes: textBytes(tt)})
		}
		out.Content = append(out.Content, e)
	}
	return out
}

func textBytes(s string) []int {
	b := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		b[i] = int(s[i])
	}
	return b
}
