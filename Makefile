# pyxsw: `make demo` and `make test` are all a new machine needs (run as root).
# (systemd: only its systemd-analyze, which tests/test_service.py verifies the unit with.)
PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
DEB_PKGS  := clang llvm libxdp-dev libbpf-dev libelf-dev pkg-config xdp-tools bpftool \
             iproute2 ethtool iputils-ping tcpdump iperf3 python3-venv systemd zsh
BENCH_PKGS := dpdk-dev openvswitch-switch linux-perf

.PHONY: install deps build strict demo test test-unit test-debug soak bench clean

install: deps $(VENV)/.installed build

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(VENV)/.installed: requirements.txt setup.py pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-build-isolation -e .
	touch $@

# Rebuilds the extension and the BPF objects in place when a source changed.
build: $(VENV)/.installed
	$(VPY) setup.py -q build_ext --inplace

# Rebuilds both with every warning an error (setup.py: PYXSW_STRICT): the extension with
# -Wall -Wextra -Werror, the XDP program with -Wextra too.  Warning flags change no code, so
# what it leaves in place is the release build.  CI builds this way (.ci/run).
strict: export PYXSW_STRICT = 1
strict: deps $(VENV)/.installed
	$(VPY) setup.py -q build_ext --inplace --force

demo: install
	$(VENV)/bin/pyxsw demo

test: install
	$(VPY) -m pytest -p no:cacheprovider tests

test-unit: install
	$(VPY) -m pytest -p no:cacheprovider tests -m "not system"

# The core built with its packet-path invariant checks (PYXSW_DEBUG) and AddressSanitizer,
# then the unit and system tests of the switch over it; the release build is restored after.
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)
test-debug: install
	PYXSW_DEBUG=1 $(VPY) setup.py -q build_ext --inplace --force
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(ASAN_LIB) $(VPY) -m pytest -p no:cacheprovider \
		tests/test_fdb.py tests/test_switch.py tests/test_faults.py tests/test_ops.py \
		tests/test_jumbo.py tests/test_jumbo_core.py && \
	PYXSW_SOAK_FRAMES=6000000 ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(ASAN_LIB) $(VPY) -m pytest \
		-p no:cacheprovider -s tests/test_soak.py; \
	rc=$$?; $(VPY) setup.py -q build_ext --inplace --force; exit $$rc

# The soak of tests/test_soak.py, long: PYXSW_SOAK_FRAMES through the switch (5 min here).
PYXSW_SOAK_FRAMES ?= 300000000
soak: install
	PYXSW_SOAK_FRAMES=$(PYXSW_SOAK_FRAMES) $(VPY) -m pytest -p no:cacheprovider -s tests/test_soak.py

bench: install
	@missing=$$(for p in $(BENCH_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	$(VPY) perf/bench.py

clean:
	rm -rf build pyxsw/*.c pyxsw/*.so pyxsw/bpf *.egg-info pyxsw/includes/counters.pxd xdp/pyxsw_counters.h
