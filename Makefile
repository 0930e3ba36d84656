# rlhf.h build. Targets:
#   make / make all    build the tests and tools
#   make demo          the whole InstructGPT pipeline on a built-in world with a gold judge (build/rlhf demo)
#                      (build/rlhf demo --tiny: the same for a small board, peak memory under 64 MB)
#   make test          run the test suite (the README's test command)
#   make test-scalar   the suite with -DRLHF_NO_SIMD (scalar kernels only)
#   make test-avx2     on an AVX-512 host, the suite built without AVX-512 (-mno-avx512f): the AVX2 micro-kernel
#   make test-oom      allocation failure at every point and a full disk at every save (tests/test_oom.c)
#   make test-cpp      the suite compiled as C++
#   make test-clang    the suite built with clang
#   make debug         the suite, the allocation-failure and full-disk sweeps (tests/test_oom.c), and the rlhf
#                      tool's error paths, under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-demo-seeds  `rlhf demo --quick` for every seed from 1 to 30 (each must finish)
#   make test-charts   the charts of `rlhf plot`, rendered to PNG by rsvg-convert (librsvg2-bin)
#   make test-arm64    the suite cross-compiled for AArch64 and run under qemu-aarch64 (NEON path)
#   make test-s390x    the suite cross-compiled for s390x and run under qemu-s390x (big-endian)
#   make test-armhf    the suite for 32-bit ARM (ARMv7, hard float) under qemu-arm (scalar path)
#   make test-riscv64  the suite for RISC-V 64 under qemu-riscv64 (scalar path)
#   make test-i386     the suite for 32-bit x86 under qemu-i386 (32-bit size_t and long)
#   make test-mingw    the suite built for Windows by MinGW-w64 and run under wine
#   make test-tcc      the suite built by tcc (no intrinsics, no OpenMP: scalar path)
#   make test-musl     the suite built with musl-gcc (musl libc; no OpenMP)
#   make fuzz          libFuzzer harnesses (clang) for the JSON, safetensors, JSONL, dataset, tokenizer and
#                      model-directory readers, FUZZ_SECONDS (60) each
#   make fuzz-long     the same harnesses FUZZ_LONG_SECONDS (3600) each on corpora kept in build/ (not in CI);
#                      make fuzz-corpus-update merges their new small inputs into tests/fuzz/corpus_*
#   make conformance   JSONTestSuite (../shared/testdata) through the JSON reader, under ASan + UBSan
#   make bench         tools/bench on configs S and M (with OpenBLAS as a yardstick when installed)
#   make hf-export-fixture  export the test models (build/test_rlhf export_hf) and rewrite tests/fixtures/hf_export.bin
#                      with tools/hf_reference.py (Debian's python3-torch, python3-regex, python3-jinja2)
#   make dpo-fixture   rewrite tests/fixtures/dpo_golden.bin (DPO losses, group advantages) with tools/gen_dpo_golden.py
#   make attention-fixture  rewrite tests/fixtures/attention_golden.bin (tiled attention) with tools/gen_attention_golden.py
#   make clean
# Options: NO_OMP=1 builds without OpenMP; CC=clang picks the compiler.

CC      ?= cc
CXX     ?= c++
CFLAGS  ?= -std=c99 -O2 -Wall -Wextra -Wpedantic
CXXFLAGS ?= -std=c++11 -O2 -Wall -Wextra -Wpedantic
LDLIBS  = -lm
BUILD   = build

# -march=native only where the compiler takes it (enables AVX2+FMA here).
NATIVE := $(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null >/dev/null 2>&1 && echo -march=native)
# OpenMP when the compiler has it, unless NO_OMP=1.
ifeq ($(NO_OMP),1)
OMP :=
else
OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null >/dev/null 2>&1 && echo -fopenmp)
endif
ALL_CFLAGS = $(CFLAGS) $(NATIVE) $(OMP)

HEADER = rlhf.h
TESTS  = tests/test_rlhf.c

.PHONY: test-oom hf-export-fixture dpo-fixture attention-fixture test-demo-seeds test-charts examples all demo conformance fuzz fuzz-long fuzz-corpus-update test-s390x test test-scalar test-avx2 test-cpp test-clang debug test-arm64 bench clean test-armhf test-riscv64 test-i386 test-mingw test-tcc test-musl

all: $(BUILD)/test_rlhf $(BUILD)/bench $(BUILD)/engine_demo $(BUILD)/rlhf

# the engine demo: pretrain a tiny byte-level GPT-2 on built-in text, then sample
$(BUILD)/engine_demo: tools/engine_demo.c $(HEADER) | $(BUILD)
	$(CC) $(ALL_CFLAGS) tools/engine_demo.c -o $@ $(LDLIBS)

# the command-line tool (POSIX): one compile of tools/rlhf.c, which includes tools/demo.c (`rlhf demo`) and tools/label.c (`rlhf label`)
RLHF_TOOL_SRC = tools/rlhf.c tools/demo.c tools/label.c tools/world.h tools/plot.h tools/atomic_file.h $(HEADER)
$(BUILD)/rlhf: $(RLHF_TOOL_SRC) | $(BUILD)
	$(CC) $(ALL_CFLAGS) tools/rlhf.c -o $@ $(LDLIBS)

demo: $(BUILD)/rlhf
	./$(BUILD)/rlhf demo

# examples/: each compiles on its own (cc -O2 examples/NN_x.c -lm); those that write files take an
# output directory (default build/examples), which `make test` passes explicitly
EXAMPLES = 00_load_and_generate 01_tokenizer 02_pretrain 03_sft 04_reward_model 05_ppo
$(BUILD)/ex_%: examples/%.c examples/out_dir.h $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)
examples: $(addprefix $(BUILD)/ex_,$(EXAMPLES))

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/test_rlhf: $(TESTS) $(HEADER) | $(BUILD)
	$(CC) $(ALL_CFLAGS) $(TESTS) -o $@ $(LDLIBS)

test: $(BUILD)/test_rlhf $(BUILD)/engine_demo $(BUILD)/rlhf $(BUILD)/test_crash $(BUILD)/hf_gpt2_dir $(BUILD)/label_pty examples
	sh tests/check_header.sh "$(CC)" "$(CXX)" "$(NATIVE) $(OMP)"
	./$(BUILD)/test_rlhf
	./$(BUILD)/test_crash 120 $(BUILD)
	./$(BUILD)/engine_demo 3 > $(BUILD)/engine_demo_smoke.txt && grep -q "after 3 steps" $(BUILD)/engine_demo_smoke.txt && echo "engine demo smoke run ok"
	./$(BUILD)/rlhf demo --quick --out $(BUILD)/demo_quick > $(BUILD)/rlhf_demo_smoke.txt && grep -q '"win_rate_ppo_vs_sft"' $(BUILD)/demo_quick/report.json && echo "rlhf demo --quick ok"
	./$(BUILD)/ex_00_load_and_generate $(BUILD)/demo_quick/sft.safetensors > $(BUILD)/ex.txt && ./$(BUILD)/ex_01_tokenizer >> $(BUILD)/ex.txt && \
	  ./$(BUILD)/ex_02_pretrain 40 $(BUILD)/examples >> $(BUILD)/ex.txt && ./$(BUILD)/ex_03_sft 2 $(BUILD)/examples >> $(BUILD)/ex.txt && \
	  ./$(BUILD)/ex_04_reward_model 1 $(BUILD)/examples >> $(BUILD)/ex.txt && ./$(BUILD)/ex_05_ppo 4 $(BUILD)/examples >> $(BUILD)/ex.txt && \
	  grep -q "round trip" $(BUILD)/ex.txt && grep -q "held-out pairwise accuracy" $(BUILD)/ex.txt && grep -q "delta_t" $(BUILD)/ex.txt && echo "examples 00-05 ok"
	sh tests/cli_smoke.sh $(BUILD)
	sh tests/cli_tiny.sh $(BUILD)
	sh tests/cli_label.sh $(BUILD)
	sh tests/cli_long.sh $(BUILD)
	sh tests/cli_errors.sh $(BUILD)/rlhf $(BUILD)/cli_errors $(BUILD)/demo_quick
	sh tests/cli_hf.sh $(BUILD)

# a GPT-2-shaped Hugging Face model directory (V 50257, tiny widths) for tests/cli_hf.sh
$(BUILD)/hf_gpt2_dir: tests/hf_gpt2_dir.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) tests/hf_gpt2_dir.c -o $@ $(LDLIBS)

# rlhf label's terminal mode driven through a pseudo-terminal (forkpty: -lutil; without forkpty it says it skipped)
$(BUILD)/label_pty: tests/label_pty.c | $(BUILD)
	$(CC) $(CFLAGS) tests/label_pty.c -o $@ -lutil

# POSIX only (setrlimit): every allocation failed in turn, and a full disk at byte counts across every save.
# Run by `make debug` (under LeakSanitizer); `make test-oom` runs the plain build (about 10 s of CPU, but each
# save fsyncs, so a minute or more of wall time on a busy disk: too slow for `make test`).
test-oom: $(BUILD)/test_oom
	./$(BUILD)/test_oom
$(BUILD)/test_oom: tests/test_oom.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) $(NATIVE) tests/test_oom.c -o $@ $(LDLIBS)
$(BUILD)/test_oom_debug: tests/test_oom.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -O1 -g $(NATIVE) -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer tests/test_oom.c -o $@ $(LDLIBS)

# POSIX only (fork, kill): a checkpoint write killed at random moments.
$(BUILD)/test_crash: tests/test_crash.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) tests/test_crash.c -o $@ $(LDLIBS)

$(BUILD)/test_rlhf_scalar: $(TESTS) $(HEADER) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -DRLHF_NO_SIMD $(TESTS) -o $@ $(LDLIBS)

test-scalar: $(BUILD)/test_rlhf_scalar
	./$(BUILD)/test_rlhf_scalar

# -march=native on an AVX-512 host selects the AVX-512 micro-kernel; this build keeps the AVX2 one tested there.
$(BUILD)/test_rlhf_avx2: $(TESTS) $(HEADER) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -mno-avx512f $(TESTS) -o $@ $(LDLIBS)

test-avx2:
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null && [ -n "$(NATIVE)" ]; then \
	  $(MAKE) --no-print-directory $(BUILD)/test_rlhf_avx2 && ./$(BUILD)/test_rlhf_avx2 --no-slow; \
	else echo "test-avx2: skipped (no AVX-512 here: make test already runs the AVX2 micro-kernel)"; fi

$(BUILD)/test_rlhf_cpp: $(TESTS) $(HEADER) | $(BUILD)
	$(CXX) $(CXXFLAGS) $(NATIVE) $(OMP) -x c++ $(TESTS) -o $@ $(LDLIBS)

test-cpp: $(BUILD)/test_rlhf_cpp
	./$(BUILD)/test_rlhf_cpp

test-clang: | $(BUILD)
	$(MAKE) CC=clang CXX=clang++ BUILD=$(BUILD)/clang test

$(BUILD)/test_rlhf_debug: $(TESTS) $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -O1 -g $(NATIVE) -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer $(TESTS) -o $@ $(LDLIBS)

# ASan + UBSan; leak detection on. (OpenMP is left out: libgomp's thread pool
# is reported as leaked by LSan. The threaded paths are covered by `make test`.)
# The rlhf tool under the same sanitizers: the demo's happy path, then every error path of tests/cli_errors.sh,
# then rlhf label's tests (tests/cli_label.sh).
$(BUILD)/rlhf_debug: $(RLHF_TOOL_SRC) | $(BUILD)
	$(CC) $(CFLAGS) -O1 -g $(NATIVE) -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer tools/rlhf.c -o $@ $(LDLIBS)

debug: $(BUILD)/test_rlhf_debug $(BUILD)/rlhf_debug $(BUILD)/label_pty $(BUILD)/test_oom_debug
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(BUILD)/test_rlhf_debug
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./$(BUILD)/test_oom_debug
	ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/rlhf_debug demo --quick --out $(BUILD)/debug_demo > $(BUILD)/debug_demo.txt
	UBSAN_OPTIONS=print_stacktrace=1 sh tests/cli_errors.sh $(BUILD)/rlhf_debug $(BUILD)/debug_cli $(BUILD)/debug_demo
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 sh tests/cli_label.sh $(BUILD) $(BUILD)/rlhf_debug $(BUILD)/debug_demo

# Every seed from 1 to 30 of the quick demo must run to its report (a sampled
# reply that no longer fits the context once scored stopped seeds 3, 7 and 17).
test-demo-seeds: $(BUILD)/rlhf
	@for s in $$(seq 1 30); do \
	  ./$(BUILD)/rlhf demo --quick --seed $$s --out $(BUILD)/demo_seeds/$$s > $(BUILD)/demo_seeds_$$s.txt 2>&1 && \
	  test -s $(BUILD)/demo_seeds/$$s/report.json || { echo "demo --quick --seed $$s failed:"; tail -5 $(BUILD)/demo_seeds_$$s.txt; exit 1; }; \
	done; echo "rlhf demo --quick: seeds 1-30 all finished"

test-charts: $(BUILD)/rlhf
	sh tests/check_charts.sh $(BUILD)

# The independent reader of exported directories (tools/hf_reference.py) writes the fixture of the
# export tests; the test run writes the exports first (its comparisons may fail until the fixture exists).
hf-export-fixture: $(BUILD)/test_rlhf
	-./$(BUILD)/test_rlhf export_hf > $(BUILD)/hf_export_run.txt 2>&1
	/usr/bin/python3 tools/hf_reference.py $(BUILD)/hf_export tests/fixtures/hf_export.bin

# JSON conformance against nst/JSONTestSuite, when the shared test data is
# beside this checkout (it is never copied into the repository).
JSON_SUITE ?= ../shared/testdata/JSONTestSuite/test_parsing
$(BUILD)/conformance: tests/conformance.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer tests/conformance.c -o $@ $(LDLIBS)

conformance: $(BUILD)/conformance
	@if [ -d "$(JSON_SUITE)" ]; then ASAN_OPTIONS=detect_leaks=1 ./$(BUILD)/conformance "$(JSON_SUITE)"; \
	else echo "conformance: $(JSON_SUITE) not found (it comes with ../shared); skipped"; fi

# AArch64: Debian's cross compiler and qemu-user, so the NEON kernels really run.
ARM64_CC ?= aarch64-linux-gnu-gcc
$(BUILD)/test_rlhf_arm64: $(TESTS) $(HEADER) | $(BUILD)
	$(ARM64_CC) $(CFLAGS) -static $(TESTS) -o $@ $(LDLIBS)

test-arm64: $(BUILD)/test_rlhf_arm64
	qemu-aarch64 ./$(BUILD)/test_rlhf_arm64 --no-slow

# s390x: big-endian, so checkpoints are really byte-swapped on the way in and out.
S390X_CC ?= s390x-linux-gnu-gcc
$(BUILD)/test_rlhf_s390x: $(TESTS) $(HEADER) | $(BUILD)
	$(S390X_CC) $(CFLAGS) -static $(TESTS) -o $@ $(LDLIBS)

test-s390x: $(BUILD)/test_rlhf_s390x
	qemu-s390x ./$(BUILD)/test_rlhf_s390x --no-slow

# The 32-bit builds take 64-bit file offsets (-D_FILE_OFFSET_BITS=64, as Debian builds its packages):
# without them glibc's readdir fails (EOVERFLOW) on file systems with 64-bit inode numbers or offsets.
LFS32 = -D_FILE_OFFSET_BITS=64

# 32-bit ARM: ARMv7 with NEON enabled in the compiler; rlhf.h still takes its scalar path there
# (its NEON kernels are AArch64's: ARMv7's NEON has no vector divide or square root and flushes subnormals).
ARMHF_CC ?= arm-linux-gnueabihf-gcc
$(BUILD)/test_rlhf_armhf: $(TESTS) $(HEADER) | $(BUILD)
	$(ARMHF_CC) $(CFLAGS) -march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard $(LFS32) -static $(TESTS) -o $@ $(LDLIBS)

test-armhf: $(BUILD)/test_rlhf_armhf
	qemu-arm ./$(BUILD)/test_rlhf_armhf --no-slow

RISCV64_CC ?= riscv64-linux-gnu-gcc
$(BUILD)/test_rlhf_riscv64: $(TESTS) $(HEADER) | $(BUILD)
	$(RISCV64_CC) $(CFLAGS) -static $(TESTS) -o $@ $(LDLIBS)

test-riscv64: $(BUILD)/test_rlhf_riscv64
	qemu-riscv64 ./$(BUILD)/test_rlhf_riscv64 --no-slow

# i386: SSE2 arithmetic (-mfpmath=sse), as x86-64 does; qemu runs x87 code four times slower.
I386_CC ?= i686-linux-gnu-gcc
$(BUILD)/test_rlhf_i386: $(TESTS) $(HEADER) | $(BUILD)
	$(I386_CC) $(CFLAGS) -msse2 -mfpmath=sse $(LFS32) -static $(TESTS) -o $@ $(LDLIBS)

test-i386: $(BUILD)/test_rlhf_i386
	qemu-i386 ./$(BUILD)/test_rlhf_i386 --no-slow

# Windows: MinGW-w64 (the AVX2 path when this machine has it), run under wine in a throwaway prefix.
MINGW_CC ?= x86_64-w64-mingw32-gcc
$(BUILD)/test_rlhf_mingw.exe: $(TESTS) $(HEADER) | $(BUILD)
	$(MINGW_CC) $(CFLAGS) $(NATIVE) $(TESTS) -o $@ $(LDLIBS)

test-mingw: $(BUILD)/test_rlhf_mingw.exe
	@command -v wine >/dev/null || { echo "test-mingw: wine is not installed: built, not run"; exit 1; }
	mkdir -p $(BUILD)/wineprefix
	WINEPREFIX=$(abspath $(BUILD))/wineprefix WINEDEBUG=-all wine ./$(BUILD)/test_rlhf_mingw.exe --no-slow

# tcc has no x86 intrinsics headers and no OpenMP: the scalar path, one thread.
$(BUILD)/test_rlhf_tcc: $(TESTS) $(HEADER) | $(BUILD)
	tcc -std=c99 -Wall $(TESTS) -o $@ $(LDLIBS)

test-tcc: $(BUILD)/test_rlhf_tcc
	./$(BUILD)/test_rlhf_tcc --no-slow

# musl libc (Debian's musl-tools); libgomp is glibc's, so no OpenMP.
$(BUILD)/test_rlhf_musl: $(TESTS) $(HEADER) | $(BUILD)
	musl-gcc $(CFLAGS) $(NATIVE) $(TESTS) -o $@ $(LDLIBS)

test-musl: $(BUILD)/test_rlhf_musl
	./$(BUILD)/test_rlhf_musl

# libFuzzer (clang): each harness runs FUZZ_SECONDS, seeded from tests/fuzz/corpus_*.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -std=c99 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZERS = json safetensors jsonl datasets tokenizer model_dir
$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(HEADER) | $(BUILD)
	clang $(FUZZ_FLAGS) $< -o $@ -lm

fuzz: $(addprefix $(BUILD)/fuzz_,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  mkdir -p $(BUILD)/fuzz-corpus-$$f; \
	  echo "fuzz_$$f: $(FUZZ_SECONDS) s"; \
	  ./$(BUILD)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz-$$f- \
	    $(BUILD)/fuzz-corpus-$$f tests/fuzz/corpus_$$f > $(BUILD)/fuzz-$$f.log 2>&1; status=$$?; \
	  grep -E "stat::number_of_executed_units|ERROR|SUMMARY" $(BUILD)/fuzz-$$f.log; \
	  if [ $$status -ne 0 ]; then echo "fuzz_$$f failed (exit $$status): see $(BUILD)/fuzz-$$f.log"; ls $(BUILD)/fuzz-$$f-* 2>/dev/null; exit 1; fi; \
	done

# Longer fuzzing (not in CI): FUZZ_LONG_SECONDS per harness, one after the other, each
# growing its corpus in build/fuzz-long-corpus-NAME (kept between runs, first merged from
# the seeds). Prints per harness the inputs run and libFuzzer's last coverage line
# (cov: edges, ft: features); a crash stops here, its input in build/fuzz-long-NAME-*.
FUZZ_LONG_SECONDS ?= 3600
fuzz-long: $(addprefix $(BUILD)/fuzz_,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  c=$(BUILD)/fuzz-long-corpus-$$f; mkdir -p $$c; \
	  ./$(BUILD)/fuzz_$$f -merge=1 $$c tests/fuzz/corpus_$$f > $(BUILD)/fuzz-long-$$f-merge.log 2>&1 || \
	    { echo "fuzz_$$f: merging the seeds failed: see $(BUILD)/fuzz-long-$$f-merge.log"; exit 1; }; \
	  echo "fuzz_$$f: $(FUZZ_LONG_SECONDS) s from $$(ls $$c | wc -l) inputs"; \
	  ./$(BUILD)/fuzz_$$f -max_total_time=$(FUZZ_LONG_SECONDS) -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz-long-$$f- \
	    $$c > $(BUILD)/fuzz-long-$$f.log 2>&1; status=$$?; \
	  grep -E "ERROR|SUMMARY" $(BUILD)/fuzz-long-$$f.log; \
	  echo "fuzz_$$f: $$(grep -o 'number_of_executed_units: *[0-9]*' $(BUILD)/fuzz-long-$$f.log | grep -o '[0-9]*$$') executions," \
	    "$$(grep -E '^#[0-9]+.*cov: ' $(BUILD)/fuzz-long-$$f.log | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')," \
	    "corpus $$(ls $$c | wc -l) inputs"; \
	  if [ $$status -ne 0 ]; then echo "fuzz_$$f failed (exit $$status): see $(BUILD)/fuzz-long-$$f.log"; ls $(BUILD)/fuzz-long-$$f-* 2>/dev/null; exit 1; fi; \
	done

# The inputs of build/fuzz-long-corpus-NAME that add coverage, at most FUZZ_SEED_MAX_LEN bytes
# each, merged into tests/fuzz/corpus_NAME (only inputs the seeds do not already cover are added).
FUZZ_SEED_MAX_LEN ?= 1024
fuzz-corpus-update: $(addprefix $(BUILD)/fuzz_,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  [ -d $(BUILD)/fuzz-long-corpus-$$f ] || continue; \
	  before=$$(ls tests/fuzz/corpus_$$f | wc -l); \
	  ./$(BUILD)/fuzz_$$f -merge=1 -max_len=$(FUZZ_SEED_MAX_LEN) tests/fuzz/corpus_$$f $(BUILD)/fuzz-long-corpus-$$f \
	    > $(BUILD)/fuzz-corpus-update-$$f.log 2>&1 || { echo "fuzz_$$f: merge failed: see $(BUILD)/fuzz-corpus-update-$$f.log"; exit 1; }; \
	  echo "corpus_$$f: $$before -> $$(ls tests/fuzz/corpus_$$f | wc -l) inputs, $$(du -sk --apparent-size tests/fuzz/corpus_$$f | cut -f1) KB"; \
	done

# Bench: OpenBLAS's cblas_sgemm is timed beside our matmul when installed
# (a yardstick only; rlhf.h never links it). Both libraries get the same
# thread count; each is timed in its own block of calls.
OPENBLAS := $(shell echo 'int main(void){return 0;}' | $(CC) -include cblas.h -x c - -lopenblas -o /dev/null >/dev/null 2>&1 && echo -DRLHF_BENCH_OPENBLAS)
BENCH_FLAGS = $(ALL_CFLAGS)
$(BUILD)/bench: tools/bench.c $(HEADER) | $(BUILD)
	$(CC) $(BENCH_FLAGS) $(OPENBLAS) -DRLHF_BENCH_CFLAGS='"$(BENCH_FLAGS)"' -I. tools/bench.c -o $@ $(LDLIBS) $(if $(OPENBLAS),-lopenblas)

BENCH_THREADS ?= 1 2
bench: $(BUILD)/bench
	@for t in $(BENCH_THREADS); do \
	  OMP_NUM_THREADS=$$t OPENBLAS_NUM_THREADS=$$t OPENBLAS_THREAD_TIMEOUT=4 ./$(BUILD)/bench $(BENCH_ARGS) || exit 1; \
	done

dpo-fixture:
	/usr/bin/python3 tools/gen_dpo_golden.py tests/fixtures/dpo_golden.bin

attention-fixture:
	/usr/bin/python3 tools/gen_attention_golden.py tests/fixtures/attention_golden.bin

clean:
	rm -rf $(BUILD)
