package server

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// fieldNames caches the JSON names of a request type's fields.
var fieldNames sync.Map // reflect.Type -> map[string]bool

// jsonFieldNames returns the JSON names of t's fields, those of embedded
// structs included.
func jsonFieldNames(t reflect.Type) map[string]bool {
	if names, ok := fieldNames.Load(t); ok {
		return names.(map[string]bool)
	}
	names := map[string]bool{}
	var collect func(reflect.Type)
	collect = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case tag == "-":
			case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
				collect(f.Type)
			case tag != "":
				names[tag] = true
			case f.IsExported():
				names[f.Name] = true
			}
		}
	}
	collect(t)
	fieldNames.Store(t, names)
	return names
}

// dropMiscasedKeys removes the top-level keys of a JSON object that name a
// field of v's struct type in another case ("MAX_TOKENS", "Stream"):
// encoding/json would bind them, while vLLM (pydantic) takes keys as
// written and ignores the ones it does not know. Anything that is not an
// object is returned unchanged, for the decoder to report.
func dropMiscasedKeys(data []byte, v any) []byte {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return data
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return data
	}
	names := jsonFieldNames(t)
	dropped := false
	for key := range obj {
		if names[key] {
			continue
		}
		for name := range names {
			if strings.EqualFold(key, name) {
				delete(obj, key)
				dropped = true
				break
			}
		}
	}
	if !dropped {
		return data
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return data
	}
	return out
}
