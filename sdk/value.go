package sdk

import (
	"fmt"
	"time"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// tableToProto converts a decoded TOML table to its wire form.
func tableToProto(m map[string]any) (*pb.Table, error) {
	t := &pb.Table{Fields: make(map[string]*pb.Value, len(m))}
	for k, v := range m {
		pv, err := valueToProto(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		t.Fields[k] = pv
	}
	return t, nil
}

func valueToProto(v any) (*pb.Value, error) {
	switch x := v.(type) {
	case string:
		return &pb.Value{Kind: &pb.Value_String_{String_: x}}, nil
	case int64:
		return &pb.Value{Kind: &pb.Value_Integer{Integer: x}}, nil
	case int:
		return &pb.Value{Kind: &pb.Value_Integer{Integer: int64(x)}}, nil
	case float64:
		return &pb.Value{Kind: &pb.Value_Float{Float: x}}, nil
	case bool:
		return &pb.Value{Kind: &pb.Value_Boolean{Boolean: x}}, nil
	case time.Time:
		return &pb.Value{Kind: &pb.Value_Datetime{Datetime: x.Format(time.RFC3339Nano)}}, nil
	case []any:
		return listToProto(x)
	case []map[string]any:
		return listToProto(x)
	case map[string]any:
		t, err := tableToProto(x)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Table{Table: t}}, nil
	}
	return nil, fmt.Errorf("unsupported value type %T", v)
}

func listToProto[T any](xs []T) (*pb.Value, error) {
	l := &pb.List{Values: make([]*pb.Value, len(xs))}
	for i, e := range xs {
		pv, err := valueToProto(e)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		l.Values[i] = pv
	}
	return &pb.Value{Kind: &pb.Value_List{List: l}}, nil
}

// tableFromProto is the inverse of tableToProto. Date-times arrive as strings.
func tableFromProto(t *pb.Table) map[string]any {
	m := make(map[string]any, len(t.GetFields()))
	for k, v := range t.GetFields() {
		m[k] = valueFromProto(v)
	}
	return m
}

func valueFromProto(v *pb.Value) any {
	switch x := v.GetKind().(type) {
	case *pb.Value_String_:
		return x.String_
	case *pb.Value_Integer:
		return x.Integer
	case *pb.Value_Float:
		return x.Float
	case *pb.Value_Boolean:
		return x.Boolean
	case *pb.Value_Datetime:
		return x.Datetime
	case *pb.Value_List:
		l := make([]any, len(x.List.GetValues()))
		for i, e := range x.List.GetValues() {
			l[i] = valueFromProto(e)
		}
		return l
	case *pb.Value_Table:
		return tableFromProto(x.Table)
	}
	return nil
}
