// Package sdk is everything a Switchyard plugin author imports, and the
// contract the core programs against.
//
// A plugin is a separate process started by the core with hashicorp/go-plugin
// over gRPC. It serves one or more kinds:
//
//   - a Transport delivers queued messages (MX delivery, a smarthost, ...);
//   - a Mechanism runs SASL exchanges for SMTP AUTH and IMAP AUTHENTICATE;
//   - a Checker decides on SMTP transactions at the connect, helo, mail, rcpt
//     and data stages.
//
// A plugin's main is one call:
//
//	func main() {
//		sdk.Serve(&sdk.Plugin{Name: "transport-example", Version: "1.0.0", Transport: &example{}})
//	}
//
// The core reaches every plugin through the same interfaces, so an in-process
// implementation (tests, benchmarks) and a plugin over RPC are interchangeable.
// The wire protocol is in sdk/proto; sdk/plugintest runs a plugin in a test.
package sdk
