/*
 * Redis's long double arithmetic for INCRBYFLOAT and HINCRBYFLOAT.
 *
 * Redis parses both operands with strtold, adds them as C `long double` (x87 extended
 * precision here) and prints the sum with "%.17Lf", trailing zeros trimmed. Done in f64, the
 * results differ in ordinary cases (0.1 + 0.2 is "0.3" in Redis, 0.30000000000000004 in
 * f64), and Rust has no extended-precision type, so these few lines are C: the same libc
 * calls Redis makes (its util.c `string2ld` and `ld2string(..., LD_STR_HUMAN)`).
 *
 * A long double crosses into Rust only as 16 opaque bytes.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's MAX_LONG_DOUBLE_CHARS. */
#define MAX_LONG_DOUBLE_CHARS (5 * 1024)

/* Redis's string2ld: 1 and the value in `out` if `s` is a float Redis accepts. */
int shoal_ld_parse(const char *s, size_t len, unsigned char out[16]) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;

    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' ||
        (errno == ERANGE &&
         (value == HUGE_VALL || value == -HUGE_VALL || fpclassify(value) == FP_ZERO)) ||
        errno == EINVAL || isnan(value))
        return 0;
    memset(out, 0, 16);
    memcpy(out, &value, sizeof(value));
    return 1;
}

/* A long double holding the integer `n` (a hash field stored as an integer). */
void shoal_ld_from_i64(long long n, unsigned char out[16]) {
    long double value = (long double)n;
    memset(out, 0, 16);
    memcpy(out, &value, sizeof(value));
}

int shoal_ld_is_finite(const unsigned char a[16]) {
    long double x;
    memcpy(&x, a, sizeof(x));
    return isfinite(x);
}

/*
 * a + b printed as Redis's ld2string(LD_STR_HUMAN) prints it, into `out` (`cap` bytes, at
 * least MAX_LONG_DOUBLE_CHARS): its length, or -1 if the sum is NaN or infinite (Redis's
 * "increment would produce NaN or Infinity").
 */
int shoal_ld_add_format(const unsigned char a[16], const unsigned char b[16], char *out,
                        size_t cap) {
    long double x, y, value;
    int l;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    value = x + y;
    if (isnan(value) || isinf(value)) return -1;
    l = snprintf(out, cap, "%.17Lf", value);
    if (l < 0 || (size_t)l + 1 > cap) return -1;
    /* Trailing zeros after the point go, then a bare point; "-0" reads "0". */
    if (strchr(out, '.') != NULL) {
        char *p = out + l - 1;
        while (*p == '0') {
            p--;
            l--;
        }
        if (*p == '.') l--;
    }
    if (l == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        l = 1;
    }
    return l;
}
