# Switchyard. `make run` serves ./mta.toml on loopback; `make test` runs every test.
GO ?= go
PLUGINS := $(notdir $(wildcard plugins/*))
PLUGIN_BINS := $(addprefix bin/plugins/,$(PLUGINS))
EXAMPLES := $(notdir $(wildcard examples/*))
EXAMPLE_BINS := $(addprefix bin/examples/,$(EXAMPLES))
PROTO := sdk/proto/switchyard/plugin/v1/plugin.proto
MODULE := github.com/switchyard-mta/switchyard

.PHONY: all build run test bench bench-quick fuzz proto clean install bin/plugins/switchyard-plugins $(EXAMPLE_BINS) bin/mta

all: build

build: bin/mta $(PLUGIN_BINS) $(EXAMPLE_BINS)

bin/mta:
	$(GO) build -o $@ ./cmd/mta

# The first-party plugins are one binary, run by the names of links to it.
bin/plugins/switchyard-plugins:
	$(GO) build -o $@ ./cmd/switchyard-plugins

$(PLUGIN_BINS): bin/plugins/%: bin/plugins/switchyard-plugins
	ln -sfn switchyard-plugins $@

# An example in a module of its own, as an outsider's plugin is, builds
# from its directory.
$(EXAMPLE_BINS): bin/examples/%:
	if [ -f examples/$*/go.mod ]; then cd examples/$* && $(GO) build -o ../../$@ .; else $(GO) build -o $@ ./examples/$*; fi

run: build
	./bin/mta serve -config mta.toml

# Tests build the binaries they run themselves; building first only reports
# compile errors early.
test: build
	$(GO) vet ./...
	$(GO) test -timeout 20m ./...
# The race detector on the packages with the most concurrency (it needs
# cgo and a C compiler); the time bound of TestSASLAuthenticate is for a
# build without it.
	if [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null; then \
		$(GO) test -race ./core/queue ./core/ctl ./core/imapd -skip '^TestSASLAuthenticate$$'; \
	else echo "race detector skipped: no cgo or C compiler (Debian: gcc)"; fi
	cd third_party/go-smtp && $(GO) vet . && $(GO) test .
	cd third_party/go-msgauth && $(GO) vet ./... && $(GO) test ./...
	for m in examples/*/go.mod; do (cd $$(dirname $$m) && $(GO) vet ./... && $(GO) test ./...) || exit 1; done

bench: build
	$(GO) run ./test/bench

# A reduced bench, in under 2 minutes.
bench-quick: build
	$(GO) run ./test/bench -quick

# Runs every fuzz target (func FuzzXxx in any package) for FUZZTIME each, one
# at a time; `make test` runs only their seed corpora.
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash .ci/fuzz

# Regenerates sdk/pluginpb. Needs protoc (Debian: protobuf-compiler) and
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
proto:
	protoc -I sdk/proto \
		--go_out=sdk/pluginpb --go_opt=module=$(MODULE)/sdk/pluginpb \
		--go-grpc_out=sdk/pluginpb --go-grpc_opt=module=$(MODULE)/sdk/pluginpb \
		$(PROTO)

# Installs mta, the plugins, a sample configuration and a systemd unit.
# DESTDIR stages the tree for packaging; the paths written into the files
# are those without it.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
PLUGINDIR ?= $(PREFIX)/lib/switchyard/plugins
DOCDIR ?= $(PREFIX)/share/doc/switchyard
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc/switchyard
STATEDIR ?= /var/lib/switchyard
SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@PLUGINDIR@|$(PLUGINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
	-e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g'

install: bin/mta bin/plugins/switchyard-plugins
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)
	install -m 0755 bin/mta $(DESTDIR)$(BINDIR)/mta
	install -m 0755 bin/plugins/switchyard-plugins $(DESTDIR)$(PLUGINDIR)/
	for p in $(PLUGINS); do ln -sfn switchyard-plugins $(DESTDIR)$(PLUGINDIR)/$$p; done
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	$(SUBST) dist/mta.toml.in > $(DESTDIR)$(SYSCONFDIR)/mta.toml.sample
	$(SUBST) dist/switchyard.service.in > $(DESTDIR)$(UNITDIR)/switchyard.service

clean:
	rm -rf bin
