package queue

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// BenchmarkAddParallel measures queueing by 20 concurrent sessions (with
// GOMAXPROCS 2) of 4 KB messages: each writes its message to a spool and
// adds it, as an SMTP session does. With
// "deliver", every message is also delivered and removed before the clock
// stops.
func BenchmarkAddParallel(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"), 4096/64)
	for _, deliver := range []bool{false, true} {
		name := "add"
		if deliver {
			name = "deliver"
		}
		b.Run(name, func(b *testing.B) {
			q, err := Open(context.Background(), b.TempDir(), Options{Log: slog.New(slog.DiscardHandler), Deliverer: &fakeDeliverer{}})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			if deliver {
				q.Start(context.Background())
			}
			env := Envelope{From: "sender@example.org", Recipients: rcpts("rcpt@example.com")}
			b.SetParallelism(max(1, 20/runtime.GOMAXPROCS(0))) // 20 sessions.
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s := q.NewSpool()
					_, err := s.Write(msg)
					if err == nil {
						_, err = q.Add(context.Background(), env, s)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			if deliver {
				waitEmpty(b, q)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
