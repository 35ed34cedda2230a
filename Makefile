# ironbark — see README.md. Every target installs what it needs first.
GO      ?= go
BIN     := bin
DATA    ?= $(CURDIR)/run

.PHONY: all deps build test run rack bench fuzz clean

all: build

deps:
	@scripts/deps

build: deps
	$(GO) build -o $(BIN)/ironbark ./cmd/ironbark
	$(GO) build -o $(BIN)/ironbark-node ./cmd/ironbark-node
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ironbark-installer ./cmd/ironbark-installer
	CGO_ENABLED=0 $(GO) build -tags frontend -o $(BIN)/ironbark-installer-iso ./cmd/ironbark-installer

test: deps
	@scripts/test

run: build
	@scripts/run $(DATA)

# A whole rack on this machine: the ISO, a frontend installed from it,
# compute VMs that PXE-install Xen and enroll; Ctrl-C removes it all.
rack: build
	$(GO) build -o $(BIN)/ironbark-rack ./cmd/ironbark-rack
	@$(BIN)/ironbark-rack $(RACK_FLAGS)

bench: build
	@scripts/bench

clean:
	rm -rf $(BIN)
