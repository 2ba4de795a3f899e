/* st_convert.c - half-precision conversions and safetensors tensor -> float32 /
 * int32 conversion. Tensor data may be unaligned in the file buffer, so every
 * element is read with memcpy (little-endian host assumed, as safetensors is
 * little-endian; checked at compile time below). */
#include "safetensors.h"

#include <math.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "d2nwg assumes a little-endian host"
#endif

static uint32_t st_f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float st_bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* float32 -> IEEE binary16, round to nearest even, with subnormals, inf, NaN. */
uint16_t st_f32_to_f16(float x)
{
    uint32_t u = st_f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep it quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 rounds to infinity (or is infinity) */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: half subnormal or zero */
        if (a <= 0x33000000u) /* <= 2^-25: ties to even at zero */
            return sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* value = m * 2^(e-150), unit 2^-24 */
        uint32_t h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t r = a - ((uint32_t)(127 - 15) << 23);
    uint32_t h = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is correct rounding */
    return (uint16_t)(sign | h);
}

float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
        if (m == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int shift = 0;
            while (!(m & 0x400u)) {
                m <<= 1;
                shift++;
            }
            m &= 0x3ffu;
            u = sign | ((uint32_t)(127 - 15 + 1 - shift) << 23) | (m << 13);
        }
    } else {
        u = sign | ((e + 127 - 15) << 23) | (m << 13);
    }
    return st_bits_f32(u);
}

uint16_t st_f32_to_bf16(float x)
{
    uint32_t u = st_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float st_bf16_to_f32(uint16_t h)
{
    return st_bits_f32((uint32_t)h << 16);
}

#define NM "%.96s"

/* Element i of t as double (exact for every dtype except 64-bit integers
 * beyond 2^53, which float32 cannot hold anyway). */
static double st_elem_double(const st_tensor *t, size_t i)
{
    const unsigned char *p = (const unsigned char *)t->data + i * st_dtype_size(t->dtype);
    switch (t->dtype) {
    case ST_BOOL: return p[0] ? 1.0 : 0.0;
    case ST_U8: return p[0];
    case ST_I8: return (int8_t)p[0];
    case ST_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case ST_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case ST_F16: { uint16_t v; memcpy(&v, p, 2); return st_f16_to_f32(v); }
    case ST_BF16: { uint16_t v; memcpy(&v, p, 2); return st_bf16_to_f32(v); }
    case ST_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case ST_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case ST_F32: { float v; memcpy(&v, p, 4); return v; }
    case ST_F64: { double v; memcpy(&v, p, 8); return v; }
    case ST_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case ST_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return 0.0;
    }
}

int st_to_f32(const st_tensor *t, float *out, d2_error *err)
{
    if ((int)t->dtype < 0 || t->dtype >= ST_DTYPE_COUNT)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": invalid dtype %d", t->name,
                       (int)t->dtype);
    if (t->numel > 0 && !t->data)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": no data", t->name);
    if (t->dtype == ST_F32) {
        memcpy(out, t->data, t->numel * 4);
        return 0;
    }
    /* Exact through double for every dtype but F64 and 64-bit integers, which
     * round once (twice for integers beyond 2^53). */
    for (size_t i = 0; i < t->numel; i++)
        out[i] = (float)st_elem_double(t, i);
    return 0;
}

int st_to_i32(const st_tensor *t, int32_t *out, d2_error *err)
{
    if ((int)t->dtype < 0 || t->dtype >= ST_DTYPE_COUNT)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": invalid dtype %d", t->name,
                       (int)t->dtype);
    if (t->numel > 0 && !t->data)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": no data", t->name);
    size_t es = st_dtype_size(t->dtype);
    const unsigned char *base = t->data;
    for (size_t i = 0; i < t->numel; i++) {
        const unsigned char *p = base + i * es;
        if (t->dtype == ST_I64) {
            int64_t v;
            memcpy(&v, p, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return d2_fail(err, D2_ERANGE,
                               "tensor \"" NM "\": element %zu = %lld does not fit in int32",
                               t->name, i, (long long)v);
            out[i] = (int32_t)v;
        } else if (t->dtype == ST_U64) {
            uint64_t v;
            memcpy(&v, p, 8);
            if (v > INT32_MAX)
                return d2_fail(err, D2_ERANGE,
                               "tensor \"" NM "\": element %zu = %llu does not fit in int32",
                               t->name, i, (unsigned long long)v);
            out[i] = (int32_t)v;
        } else if (t->dtype == ST_U32) {
            uint32_t v;
            memcpy(&v, p, 4);
            if (v > INT32_MAX)
                return d2_fail(err, D2_ERANGE,
                               "tensor \"" NM "\": element %zu = %u does not fit in int32",
                               t->name, i, v);
            out[i] = (int32_t)v;
        } else if (t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F32 ||
                   t->dtype == ST_F64) {
            double v = st_elem_double(t, i);
            if (!(v >= (double)INT32_MIN && v <= (double)INT32_MAX) || v != floor(v))
                return d2_fail(err, D2_ERANGE,
                               "tensor \"" NM "\": element %zu = %g is not an int32 integer",
                               t->name, i, v);
            out[i] = (int32_t)v;
        } else {
            out[i] = (int32_t)st_elem_double(t, i); /* 8/16-bit integers and bool: exact */
        }
    }
    return 0;
}
