package main

import (
	"fmt"
	"strconv"
)

// The subset of Jaeger's query API JSON (model/json) that the checks read.
type jaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []jaegerSpan `json:"spans"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []reference `json:"references"`
	Tags          []keyValue  `json:"tags"`
	Logs          []spanLog   `json:"logs"`
}

type reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type spanLog struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []keyValue `json:"fields"`
}

type keyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// kv indexes key-values by key.
type kv map[string]keyValue

func index(list []keyValue) kv {
	m := make(kv, len(list))
	for _, x := range list {
		m[x.Key] = x
	}
	return m
}

func (m kv) str(key string) string {
	v, ok := m[key]
	if !ok {
		return ""
	}
	return fmt.Sprint(v.Value)
}

// int reads an int64 tag (Jaeger encodes int64 as a JSON number).
func (m kv) int(key string) (int64, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	switch x := v.Value.(type) {
	case float64:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// event is one span log with its event name.
type event struct {
	name   string
	fields kv
}

func events(s jaegerSpan) []event {
	out := make([]event, 0, len(s.Logs))
	for _, l := range s.Logs {
		f := index(l.Fields)
		out = append(out, event{name: f.str("event"), fields: f})
	}
	return out
}

// scope returns the instrumentation scope tag, whatever the translator
// version calls it.
func scope(s jaegerSpan) string {
	t := index(s.Tags)
	if v := t.str("otel.scope.name"); v != "" {
		return v
	}
	return t.str("otel.library.name")
}
