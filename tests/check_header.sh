#!/bin/sh
# Compile tests of rlhf.h (run by `make test` and `make test-clang`): the header
# must build warning-free (-Werror, with -Wconversion and -Wshadow on top of
# -Wall -Wextra -Wpedantic) as C99, as C++11, under RLHF_STATIC and RLHF_NO_SIMD,
# with and without OpenMP;
# link into a program of two translation units; refuse half an allocator; and
# the quick-start program in its top comment must compile and run.
# Usage: tests/check_header.sh [CC] [CXX] [extra flags]
set -u
CC=${1:-cc}
CXX=${2:-c++}
EXTRA=${3:-}
W="-Wall -Wextra -Wpedantic -Wconversion -Wshadow -Werror"
# g++ leaves -Wsign-conversion out of -Wconversion for C++ (gcc in C and clang keep it in)
W="$W -Wsign-conversion"
# the extra flags without -fopenmp: RLHF__OMP expands to nothing there
NOOMP=$(printf ' %s ' "$EXTRA" | sed 's/ -fopenmp / /g')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
top=$(cd "$(dirname "$0")/.." && pwd)

ok()  { printf '%-44s ok\n' "$1"; }
bad() { printf '%-44s FAIL\n' "$1"; sed 's/^/    /' "$tmp/log" | head -20; fail=1; }
try() { name=$1; shift; if "$@" >"$tmp/log" 2>&1; then ok "$name"; else bad "$name"; fi; }

printf '#define RLHF_IMPLEMENTATION\n#include "rlhf.h"\nint main(void){ return rlhf_result_string(RLHF_OK)[0] != 111; }\n' > "$tmp/impl.c"
printf '#include "rlhf.h"\nint other(void){ rlhf_config c = rlhf_config_default(); return c.n_layer; }\n' > "$tmp/decl.c"
printf '#define RLHF_STATIC\n#define RLHF_IMPLEMENTATION\n#include "rlhf.h"\nint other(void){ return (int)rlhf_config_default().n_layer; }\n' > "$tmp/static2.c"
printf '#define RLHF_STATIC\n#define RLHF_IMPLEMENTATION\n#include "rlhf.h"\nint other(void);\nint main(void){ return other() != rlhf_config_default().n_layer; }\n' > "$tmp/static1.c"
printf '#define RLHF_MALLOC(n) malloc(n)\n#define RLHF_IMPLEMENTATION\n#include "rlhf.h"\n' > "$tmp/half.c"

try "C99 -Werror"                 $CC -std=c99 $W $EXTRA -I"$top" -c "$tmp/impl.c" -o "$tmp/a.o"
try "C99 -Werror -DRLHF_NO_SIMD"  $CC -std=c99 $W $EXTRA -DRLHF_NO_SIMD -I"$top" -c "$tmp/impl.c" -o "$tmp/a.o"
try "C99 -Werror, no OpenMP"      $CC -std=c99 $W $NOOMP -I"$top" -c "$tmp/impl.c" -o "$tmp/a.o"
try "C++11 -Werror"               $CXX -std=c++11 $W $EXTRA -x c++ -I"$top" -c "$tmp/impl.c" -o "$tmp/a.o"
try "C++11 -Werror -DRLHF_NO_SIMD" $CXX -std=c++11 $W $EXTRA -DRLHF_NO_SIMD -x c++ -I"$top" -c "$tmp/impl.c" -o "$tmp/a.o"
try "C++11 -Werror, no OpenMP"    $CXX -std=c++11 $W $NOOMP -x c++ -I"$top" -c "$tmp/impl.c" -o "$tmp/a.o"
try "two translation units link"  sh -c "$CC -std=c99 $W $EXTRA -I'$top' '$tmp/impl.c' '$tmp/decl.c' -o '$tmp/two' -lm && '$tmp/two'"
try "RLHF_STATIC in two units"    sh -c "$CC -std=c99 $W $EXTRA -I'$top' '$tmp/static1.c' '$tmp/static2.c' -o '$tmp/st' -lm && '$tmp/st'"
if $CC -std=c99 -I"$top" -c "$tmp/half.c" -o "$tmp/h.o" >"$tmp/log" 2>&1; then
    bad "half an allocator is refused"
elif grep -q "define both RLHF_MALLOC and RLHF_FREE" "$tmp/log"; then
    ok "half an allocator is refused"
else
    bad "half an allocator is refused"
fi
# the QUICK START of the top comment, as printed there
sed -n '/^   QUICK START/,/^   COMPILE-TIME OPTIONS/p' "$top/rlhf.h" | grep '^       ' | sed 's/^       //' > "$tmp/quick.c"
try "quick start compiles and runs" sh -c "$CC -std=c99 $W $EXTRA -I'$top' '$tmp/quick.c' -o '$tmp/quick' -lm && '$tmp/quick' > '$tmp/quick.out' && grep -q 'step 40 loss' '$tmp/quick.out'"
exit $fail
