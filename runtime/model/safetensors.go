package model

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// TensorInfo is one entry of a safetensors header.
type TensorInfo struct {
	Name  string
	DType string // safetensors dtype name: F32, F16, BF16, ...
	Shape []int
	// Begin and End are byte offsets into the data section.
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// dtypeSizes are the element sizes of the safetensors dtypes this parser
// knows; only F32, F16 and BF16 can be loaded as weights.
var dtypeSizes = map[string]int64{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
	"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}

// maxHeaderLen bounds the JSON header (the reference implementation uses 100 MB).
const maxHeaderLen = 100 << 20

// Header is a parsed safetensors header.
type Header struct {
	Tensors  map[string]TensorInfo
	Metadata map[string]string
	// DataStart is the file offset of the data section (8 + header length).
	DataStart int64
}

// ParseHeader parses the header at the start of a safetensors file of
// fileSize bytes; prefix must hold at least the first 8+headerLen bytes (it
// may hold the whole file). file names the file in errors. Every tensor's
// offsets are checked against its dtype and shape and against fileSize.
func ParseHeader(file string, prefix []byte, fileSize int64) (*Header, error) {
	if len(prefix) < 8 || fileSize < 8 {
		return nil, fmt.Errorf("model: %s: truncated safetensors file (%d bytes, no header length)", file, fileSize)
	}
	n := binary.LittleEndian.Uint64(prefix[:8])
	if n > maxHeaderLen {
		return nil, fmt.Errorf("model: %s: safetensors header length %d exceeds %d", file, n, maxHeaderLen)
	}
	if int64(n) > fileSize-8 || uint64(len(prefix)) < 8+n {
		return nil, fmt.Errorf("model: %s: truncated safetensors file: header of %d bytes, file of %d", file, n, fileSize)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(prefix[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("model: %s: bad safetensors header JSON: %w", file, err)
	}
	h := &Header{Tensors: make(map[string]TensorInfo, len(raw)), DataStart: 8 + int64(n)}
	dataSize := fileSize - h.DataStart
	for name, v := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(v, &h.Metadata); err != nil {
				return nil, fmt.Errorf("model: %s: bad __metadata__ (want string values): %w", file, err)
			}
			continue
		}
		t, err := parseTensorEntry(name, v, dataSize)
		if err != nil {
			return nil, fmt.Errorf("model: %s: tensor %q: %w", file, name, err)
		}
		h.Tensors[name] = t
	}
	if err := checkTiling(h.Tensors, dataSize); err != nil {
		return nil, fmt.Errorf("model: %s: %w", file, err)
	}
	return h, nil
}

// checkTiling requires what the safetensors format requires of the data
// section: the tensors' byte ranges, in order, start at 0, follow each other
// without gap or overlap, and end at the end of the file.
func checkTiling(tensors map[string]TensorInfo, dataSize int64) error {
	order := make([]TensorInfo, 0, len(tensors))
	for _, t := range tensors {
		order = append(order, t)
	}
	slices.SortFunc(order, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End), strings.Compare(a.Name, b.Name))
	})
	at, prev := int64(0), ""
	for _, t := range order {
		if t.Begin != at {
			if prev == "" {
				return fmt.Errorf("tensor %q: data_offsets start at %d, want 0 (the first tensor's data starts the data section)", t.Name, t.Begin)
			}
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q or leave a gap after it: it ends at %d", t.Name, t.Begin, t.End, prev, at)
		}
		at, prev = t.End, t.Name
	}
	if at != dataSize {
		return fmt.Errorf("%d bytes of data follow the last tensor's data (which ends at %d of %d)", dataSize-at, at, dataSize)
	}
	return nil
}

func parseTensorEntry(name string, v json.RawMessage, dataSize int64) (TensorInfo, error) {
	var e struct {
		DType       string   `json:"dtype"`
		Shape       []int64  `json:"shape"`
		DataOffsets []uint64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(v, &e); err != nil {
		return TensorInfo{}, fmt.Errorf("bad entry: %w", err)
	}
	size, ok := dtypeSizes[e.DType]
	if !ok {
		return TensorInfo{}, fmt.Errorf("unknown dtype %q", e.DType)
	}
	if len(e.DataOffsets) != 2 {
		return TensorInfo{}, fmt.Errorf("data_offsets must have 2 entries, got %d", len(e.DataOffsets))
	}
	t := TensorInfo{Name: name, DType: e.DType, Shape: make([]int, len(e.Shape))}
	numel := uint64(1)
	for i, d := range e.Shape {
		if d < 0 || d > math.MaxInt32 {
			return TensorInfo{}, fmt.Errorf("bad dimension %d", d)
		}
		t.Shape[i] = int(d)
		if d != 0 && numel > math.MaxInt64/uint64(d)/uint64(size) {
			return TensorInfo{}, fmt.Errorf("shape %v overflows", e.Shape)
		}
		numel *= uint64(d)
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin > end {
		return TensorInfo{}, fmt.Errorf("data_offsets [%d, %d] are reversed", begin, end)
	}
	if end > uint64(dataSize) {
		return TensorInfo{}, fmt.Errorf("truncated file: data ends at %d, past the %d bytes of data", end, dataSize)
	}
	if end-begin != numel*uint64(size) {
		return TensorInfo{}, fmt.Errorf("%d bytes for %s shape %v (want %d)", end-begin, e.DType, e.Shape, numel*uint64(size))
	}
	t.Begin, t.End = int64(begin), int64(end)
	return t, nil
}

// SafetensorsFile is one memory-mapped safetensors file.
type SafetensorsFile struct {
	Path string
	*Header
	data  []byte // the whole file, mapped
	unmap func() error
}

// OpenSafetensors maps path and parses its header.
func OpenSafetensors(path string) (*SafetensorsFile, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	h, err := ParseHeader(path, data, int64(len(data)))
	if err != nil {
		unmap()
		return nil, err
	}
	return &SafetensorsFile{Path: path, Header: h, data: data, unmap: unmap}, nil
}

// Bytes returns the tensor's bytes inside the mapping (valid until Close).
func (f *SafetensorsFile) Bytes(t TensorInfo) []byte {
	return f.data[f.DataStart+t.Begin : f.DataStart+t.End : f.DataStart+t.End]
}

// Close unmaps the file.
func (f *SafetensorsFile) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	return err
}

// Weights is the set of safetensors files of a model directory.
type Weights struct {
	files  []*SafetensorsFile
	byName map[string]*SafetensorsFile
}

// ErrNoWeights is wrapped when a directory holds neither model.safetensors
// nor model.safetensors.index.json.
var ErrNoWeights = errors.New("no model.safetensors or model.safetensors.index.json")

// OpenWeights opens dir/model.safetensors, or the shards listed by
// dir/model.safetensors.index.json.
func OpenWeights(dir string) (*Weights, error) {
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		f, err := OpenSafetensors(single)
		if err != nil {
			return nil, err
		}
		w := &Weights{files: []*SafetensorsFile{f}, byName: map[string]*SafetensorsFile{}}
		for name := range f.Tensors {
			w.byName[name] = f
		}
		return w, nil
	}
	index := filepath.Join(dir, "model.safetensors.index.json")
	data, err := os.ReadFile(index)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("model: %s: %w", dir, ErrNoWeights)
		}
		return nil, fmt.Errorf("model: %w", err)
	}
	return openSharded(dir, index, data)
}

func openSharded(dir, index string, data []byte) (*Weights, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("model: %s: bad JSON: %w", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, &FieldError{File: index, Field: "weight_map", Err: errors.New("missing or empty")}
	}
	shards := map[string]*SafetensorsFile{}
	w := &Weights{byName: map[string]*SafetensorsFile{}}
	names := make([]string, 0, len(idx.WeightMap))
	for name := range idx.WeightMap {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		shard := idx.WeightMap[name]
		if shard == "" || filepath.Base(shard) != shard {
			w.Close()
			return nil, &FieldError{File: index, Field: "weight_map." + name, Err: fmt.Errorf("bad shard file name %q", shard)}
		}
		f, ok := shards[shard]
		if !ok {
			var err error
			f, err = OpenSafetensors(filepath.Join(dir, shard))
			if err != nil {
				w.Close()
				return nil, err
			}
			shards[shard] = f
			w.files = append(w.files, f)
		}
		if _, ok := f.Tensors[name]; !ok {
			w.Close()
			return nil, fmt.Errorf("model: %s: tensor %q listed in %s is missing", f.Path, name, filepath.Base(index))
		}
		w.byName[name] = f
	}
	return w, nil
}

// Lookup finds a tensor by name.
func (w *Weights) Lookup(name string) (*SafetensorsFile, TensorInfo, bool) {
	f, ok := w.byName[name]
	if !ok {
		return nil, TensorInfo{}, false
	}
	return f, f.Tensors[name], true
}

// Has reports whether a tensor exists.
func (w *Weights) Has(name string) bool { _, ok := w.byName[name]; return ok }

// Files lists the files (for error messages).
func (w *Weights) Files() []string {
	p := make([]string, len(w.files))
	for i, f := range w.files {
		p[i] = f.Path
	}
	return p
}

// Close unmaps every file.
func (w *Weights) Close() error {
	var errs []error
	for _, f := range w.files {
		errs = append(errs, f.Close())
	}
	w.files = nil
	return errors.Join(errs...)
}
