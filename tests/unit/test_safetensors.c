/* test_safetensors.c - safetensors writer/reader round trips, determinism,
 * half-precision rounding, conversions, and refusal of malformed files with a
 * message naming the problem (plus a mutation smoke test that must never
 * crash, also under ASan). */
#include "fileio.h"
#include "testutil.h"

#include <dirent.h>
#include <float.h>
#include <math.h>

#include "safetensors.h"

static uint64_t xs_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void assert_msg_has(const d2_error *e, const char *needle)
{
    if (!strstr(e->msg, needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", e->msg, needle);
}

/* A file from a header string (no padding added) and data_len bytes of data. */
static unsigned char *make_file(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *b = calloc(1, *len);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)(i * 7 + 1);
    return b;
}

/* Parse header+data and expect failure with code and a message containing needle. */
static void expect_refused(const char *header, size_t data_len, int code, const char *needle)
{
    size_t len;
    unsigned char *b = make_file(header, data_len, &len);
    st_file f;
    d2_error e = {0};
    int rc = st_parse(&f, b, len, &e);
    if (rc == 0)
        fail_msg("header accepted: %s", header);
    assert_int_equal(rc, code);
    assert_int_equal(e.code, code);
    assert_msg_has(&e, needle);
    free(b);
}

static void test_dtype_table(void **state)
{
    (void)state;
    static const size_t sizes[ST_DTYPE_COUNT] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        st_dtype t;
        assert_int_equal(st_dtype_parse(st_dtype_name((st_dtype)i), &t), 0);
        assert_int_equal(t, i);
        assert_int_equal(st_dtype_size((st_dtype)i), sizes[i]);
    }
    st_dtype t;
    assert_int_not_equal(st_dtype_parse("F8", &t), 0);
    assert_int_not_equal(st_dtype_parse("f32", &t), 0);
    assert_string_equal(st_dtype_name(ST_BF16), "BF16");
    assert_string_equal(st_dtype_name(ST_BOOL), "BOOL");
}

/* Every dtype at a 2-D shape, plus a scalar and an empty tensor, with metadata
 * that needs escaping; parsed back from memory and from a file. */
static void check_roundtrip_file(const st_file *f, unsigned char *const *datas,
                                 const size_t *nbytes)
{
    /* Tensors come back in data-offset order = insertion order here. */
    assert_int_equal(f->count, ST_DTYPE_COUNT + 2);
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", st_dtype_name((st_dtype)i));
        const st_tensor *t = st_find(f, name);
        assert_non_null(t);
        assert_ptr_equal(t, &f->tensors[i]);
        assert_int_equal(t->dtype, i);
        assert_int_equal(t->ndim, 2);
        assert_int_equal(t->shape[0], 3);
        assert_int_equal(t->shape[1], 5);
        assert_int_equal(t->numel, 15);
        assert_int_equal(t->end - t->begin, nbytes[i]);
        assert_memory_equal(t->data, datas[i], nbytes[i]);
    }
    const st_tensor *s = st_find(f, "scalar");
    assert_non_null(s);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    float sv;
    memcpy(&sv, s->data, 4);
    assert_true(sv == 2.5f);
    const st_tensor *z = st_find(f, "empty");
    assert_non_null(z);
    assert_int_equal(z->ndim, 2);
    assert_int_equal(z->shape[0], 0);
    assert_int_equal(z->shape[1], 4);
    assert_int_equal(z->numel, 0);
    assert_null(st_find(f, "nope"));
    assert_int_equal(f->nmeta, 3);
    assert_string_equal(f->meta_keys[0], "config");
    assert_string_equal(st_meta(f, "config"), "{\"a\": [1, 2], \"q\": \"x\\\\y\"}\n\t\x01");
    assert_string_equal(st_meta(f, "name"), "caf\xc3\xa9 \xe2\x82\xac");
    assert_string_equal(st_meta(f, "empty"), "");
    assert_null(st_meta(f, "missing"));
}

static void test_roundtrip_every_dtype(void **state)
{
    (void)state;
    st_writer w;
    st_writer_init(&w);
    d2_error e = {0};
    assert_int_equal(st_writer_meta(&w, "config", "{\"a\": [1, 2], \"q\": \"x\\\\y\"}\n\t\x01", &e),
                     0);
    assert_int_equal(st_writer_meta(&w, "name", "caf\xc3\xa9 \xe2\x82\xac", &e), 0);
    assert_int_equal(st_writer_meta(&w, "empty", "", &e), 0);
    unsigned char *datas[ST_DTYPE_COUNT];
    size_t nbytes[ST_DTYPE_COUNT];
    uint64_t s = 12345;
    int64_t shape[2] = {3, 5};
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        nbytes[i] = 15 * st_dtype_size((st_dtype)i);
        datas[i] = malloc(nbytes[i]);
        assert_non_null(datas[i]);
        for (size_t k = 0; k < nbytes[i]; k++)
            datas[i][k] = (unsigned char)xs_next(&s);
        if (i == ST_BOOL)
            for (size_t k = 0; k < nbytes[i]; k++)
                datas[i][k] &= 1;
        char name[32];
        snprintf(name, sizeof name, "t.%s", st_dtype_name((st_dtype)i));
        assert_int_equal(st_writer_add(&w, name, (st_dtype)i, 2, shape, datas[i], nbytes[i], &e),
                         0);
    }
    float sv = 2.5f;
    assert_int_equal(st_writer_add_f32(&w, "scalar", 0, NULL, &sv, &e), 0);
    int64_t zshape[2] = {0, 4};
    assert_int_equal(st_writer_add(&w, "empty", ST_F64, 2, zshape, NULL, 0, &e), 0);

    unsigned char *buf;
    size_t len;
    assert_int_equal(st_writer_to_memory(&w, &buf, &len, &e), 0);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    assert_int_equal(hlen % 8, 0);
    assert_true(8 + hlen <= len);
    st_file f;
    assert_int_equal(st_parse(&f, buf, len, &e), 0);
    check_roundtrip_file(&f, datas, nbytes);
    assert_int_equal(f.len, len);
    assert_memory_equal(f.buf, buf, len);
    st_free(&f);

    char *dir = tu_tmpdir("st");
    char path[512];
    snprintf(path, sizeof path, "%s/all.safetensors", dir);
    assert_int_equal(st_writer_save(&w, path, &e), 0);
    assert_int_equal(st_load(&f, path, &e), 0);
    check_roundtrip_file(&f, datas, nbytes);
    st_free(&f);
    unsigned char *disk;
    size_t dlen;
    assert_int_equal(d2_read_file(path, &disk, &dlen, 0, &e), 0);
    assert_int_equal(dlen, len);
    assert_memory_equal(disk, buf, len);
    free(disk);

    /* No temporary file is left behind next to the output. */
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL)
        if (de->d_name[0] != '.')
            files++;
    closedir(dh);
    assert_int_equal(files, 1);

    free(buf);
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        free(datas[i]);
    st_writer_free(&w);
    tu_rmrf(dir);
    free(dir);
}

static void build_small(st_writer *w)
{
    d2_error e = {0};
    st_writer_init(w);
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[2] = {-7, 9};
    int64_t sa[2] = {2, 3}, sb[1] = {2};
    assert_int_equal(st_writer_meta(w, "k1", "v1", &e), 0);
    assert_int_equal(st_writer_meta(w, "a", "b", &e), 0);
    assert_int_equal(st_writer_add_f32(w, "w", 2, sa, a, &e), 0);
    assert_int_equal(st_writer_add(w, "b", ST_I32, 1, sb, b, sizeof b, &e), 0);
}

static void test_deterministic_bytes(void **state)
{
    (void)state;
    st_writer w1, w2;
    build_small(&w1);
    build_small(&w2);
    unsigned char *b1, *b2;
    size_t l1, l2;
    d2_error e = {0};
    assert_int_equal(st_writer_to_memory(&w1, &b1, &l1, &e), 0);
    assert_int_equal(st_writer_to_memory(&w2, &b2, &l2, &e), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);
    /* The exact header: metadata first (insertion order), then tensors in
     * insertion order with contiguous offsets, spaces up to a multiple of 8. */
    const char *want = "{\"__metadata__\":{\"k1\":\"v1\",\"a\":\"b\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                       "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[24,32]}}";
    size_t wl = strlen(want);
    size_t padded = (wl + 7) / 8 * 8;
    assert_int_equal(l1, 8 + padded + 32);
    assert_int_equal(b1[0] | b1[1] << 8, padded);
    for (int i = 2; i < 8; i++)
        assert_int_equal(b1[i], 0);
    assert_memory_equal(b1 + 8, want, wl);
    for (size_t i = wl; i < padded; i++)
        assert_int_equal(b1[8 + i], ' ');
    float x;
    memcpy(&x, b1 + 8 + padded + 20, 4);
    assert_true(x == 6.0f);
    int32_t y;
    memcpy(&y, b1 + 8 + padded + 24, 4);
    assert_int_equal(y, -7);
    free(b1);
    free(b2);
    st_writer_free(&w1);
    st_writer_free(&w2);

    /* Without metadata there is no __metadata__ key; no tensors is valid too. */
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(st_writer_to_memory(&w, &b1, &l1, &e), 0);
    assert_int_equal(l1, 16);
    assert_memory_equal(b1 + 8, "{}      ", 8);
    st_file f;
    assert_int_equal(st_parse(&f, b1, l1, &e), 0);
    assert_int_equal(f.count, 0);
    assert_int_equal(f.nmeta, 0);
    st_free(&f);
    free(b1);
    st_writer_free(&w);
}

static void test_writer_refuses(void **state)
{
    (void)state;
    st_writer w;
    st_writer_init(&w);
    d2_error e = {0};
    float v[4] = {0};
    int64_t s4[1] = {4}, s3[1] = {3}, neg[1] = {-1};
    assert_int_equal(st_writer_add_f32(&w, "a", 1, s4, v, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "a", 1, s4, v, &e), D2_EINVAL);
    assert_msg_has(&e, "duplicate tensor name \"a\"");
    assert_int_equal(st_writer_add(&w, "b", ST_F32, 1, s3, v, 16, &e), D2_EINVAL);
    assert_msg_has(&e, "shape/size mismatch");
    assert_msg_has(&e, "\"b\"");
    assert_int_equal(st_writer_add_f32(&w, "c", 1, neg, v, &e), D2_EINVAL);
    assert_msg_has(&e, "negative");
    assert_int_equal(st_writer_add_f32(&w, "bad\xff", 1, s4, v, &e), D2_EINVAL);
    assert_msg_has(&e, "UTF-8");
    assert_int_equal(st_writer_add_f32(&w, "__metadata__", 1, s4, v, &e), D2_EINVAL);
    assert_int_equal(st_writer_add_f32(&w, "", 1, s4, v, &e), D2_EINVAL);
    assert_int_equal(st_writer_meta(&w, "k", "v", &e), 0);
    assert_int_equal(st_writer_meta(&w, "k", "w", &e), D2_EINVAL);
    assert_msg_has(&e, "duplicate metadata key");
    assert_int_equal(st_writer_meta(&w, "k2", "\xc0\x80", &e), D2_EINVAL);
    assert_msg_has(&e, "UTF-8");
    assert_int_equal(w.count, 1);
    assert_int_equal(w.nmeta, 1);
    st_writer_free(&w);
}

static void test_malformed_lengths(void **state)
{
    (void)state;
    st_file f;
    d2_error e = {0};
    /* Shorter than the 8-byte length field. */
    unsigned char tiny[5] = {1, 0, 0, 0, 0};
    assert_int_equal(st_parse(&f, tiny, sizeof tiny, &e), D2_EFORMAT);
    assert_msg_has(&e, "truncated file");
    assert_int_equal(st_parse(&f, tiny, 0, &e), D2_EFORMAT);
    assert_msg_has(&e, "shorter than the 8-byte header length");

    /* Header length larger than the file. */
    size_t len;
    unsigned char *b = make_file("{}      ", 0, &len);
    b[0] = 200;
    assert_int_equal(st_parse(&f, b, len, &e), D2_EFORMAT);
    assert_msg_has(&e, "header length 200 is longer than the file (8 bytes");
    /* A file cut inside its header. */
    b[0] = 8;
    assert_int_equal(st_parse(&f, b, 12, &e), D2_EFORMAT);
    assert_msg_has(&e, "truncated header");
    free(b);

    /* Header over 100 MB: only the 8-byte length is crafted, nothing big is
     * allocated; from memory and from disk. */
    unsigned char big[16] = {0};
    uint64_t h = (uint64_t)ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++)
        big[i] = (unsigned char)(h >> (8 * i));
    assert_int_equal(st_parse(&f, big, sizeof big, &e), D2_EFORMAT);
    assert_msg_has(&e, "exceeds the 100 MB limit");
    char *dir = tu_tmpdir("st");
    char path[512];
    snprintf(path, sizeof path, "%s/big.safetensors", dir);
    tu_write_bytes(path, big, sizeof big);
    assert_int_equal(st_load(&f, path, &e), D2_EFORMAT);
    assert_msg_has(&e, "exceeds the 100 MB limit");
    assert_msg_has(&e, path);
    /* The largest 64-bit length. */
    memset(big, 0xff, 8);
    assert_int_equal(st_parse(&f, big, sizeof big, &e), D2_EFORMAT);
    assert_msg_has(&e, "exceeds the 100 MB limit");

    /* Truncated files on disk name the path too. */
    b = make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &len);
    tu_write_bytes(path, b, len - 3);
    assert_int_equal(st_load(&f, path, &e), D2_EFORMAT);
    assert_msg_has(&e, path);
    assert_msg_has(&e, "beyond the data section (5 bytes)");
    tu_write_bytes(path, b, 20);
    assert_int_equal(st_load(&f, path, &e), D2_EFORMAT);
    assert_msg_has(&e, "truncated header");
    tu_write_bytes(path, b, 3);
    assert_int_equal(st_load(&f, path, &e), D2_EFORMAT);
    assert_msg_has(&e, "truncated file: 3 bytes");
    free(b);
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    assert_int_equal(st_load(&f, path, &e), D2_ENOTFOUND);
    assert_msg_has(&e, "cannot open");
    tu_rmrf(dir);
    free(dir);
}

static void test_malformed_offsets(void **state)
{
    (void)state;
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, D2_EFORMAT, "overlapping offsets: tensor \"b\" begins at 4");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                   12, D2_EFORMAT, "gap in offsets: 4 unused bytes before tensor \"b\"");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                   D2_EFORMAT, "gap in offsets");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                   D2_EFORMAT, "data not fully covered");
    expect_refused("{}", 3, D2_EFORMAT, "data not fully covered");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                   D2_EFORMAT, "tensor \"a\": data_offsets end 16 is beyond the data section");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                   D2_EFORMAT, "begin 8 > end 4");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, D2_EFORMAT,
                   "data_offsets is not an array of two integers");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
                   D2_EFORMAT, "non-negative integers");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
                   D2_EFORMAT, "non-negative integers");
}

static void test_malformed_tensors(void **state)
{
    (void)state;
    expect_refused("{\"w\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   D2_EFORMAT, "tensor \"w\": unknown dtype \"F8\"");
    expect_refused("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, D2_EFORMAT,
                   "dtype is not a string");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   D2_EFORMAT, "tensor \"w\": shape/size mismatch");
    expect_refused("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
                   D2_EFORMAT, "BF16 shape holds 8 bytes but data_offsets span 16");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                   D2_EFORMAT, "tensor \"w\": shape[0] is negative");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,8]}}", 8,
                   D2_EFORMAT, "shape[1] is not an integer");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                   D2_EFORMAT, "shape[0] is not an integer");
    expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                   D2_EFORMAT, "shape is not an array");
    expect_refused("{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],"
                   "\"data_offsets\":[0,8]}}",
                   8, D2_EFORMAT, "tensor \"w\": size of shape overflows");
    expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904,4],"
                   "\"data_offsets\":[0,0]}}",
                   0, D2_EFORMAT, "size of shape overflows");
    expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                   "\"data_offsets\":[0,1]}}",
                   1, D2_EUNSUPPORTED, "9 dimensions");
    expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, D2_EFORMAT,
                   "tensor \"w\": missing field \"data_offsets\"");
    expect_refused("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, D2_EFORMAT,
                   "missing field \"dtype\"");
    expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1,
                   D2_EFORMAT, "tensor \"w\": unknown field \"x\"");
    expect_refused("{\"w\":[1,2]}", 0, D2_EFORMAT, "tensor \"w\": entry is not an object");
    expect_refused("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   D2_EFORMAT, "empty tensor name");
}

static void test_malformed_header(void **state)
{
    (void)state;
    expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                   2, D2_EFORMAT, "duplicate name in header");
    expect_refused("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                   2, D2_EFORMAT, "'\"w\"'");
    expect_refused("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, D2_EFORMAT,
                   "duplicate name in header");
    expect_refused("{\"w\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   D2_EFORMAT, "not valid UTF-8 (byte 3 of the header)");
    /* Overlong encoding of '/', and a UTF-16 surrogate encoded in UTF-8. */
    expect_refused("{\"\xc0\xaf\":1}", 0, D2_EFORMAT, "not valid UTF-8");
    expect_refused("{\"\xed\xa0\x80\":1}", 0, D2_EFORMAT, "not valid UTF-8");
    expect_refused("{\"w\":{\"dtype\":\"U8\",", 0, D2_EFORMAT, "not valid JSON");
    expect_refused("", 0, D2_EFORMAT, "not valid JSON");
    expect_refused("{} x", 0, D2_EFORMAT, "not valid JSON");
    expect_refused("[]", 0, D2_EFORMAT, "header is not a JSON object");
    expect_refused("{\"__metadata__\":{\"k\":1}}", 0, D2_EFORMAT,
                   "__metadata__ value of key \"k\" is not a string");
    expect_refused("{\"__metadata__\":{\"a\":\"x\",\"k\":null}}", 0, D2_EFORMAT,
                   "key \"k\" is not a string");
    expect_refused("{\"__metadata__\":[\"a\"]}", 0, D2_EFORMAT, "__metadata__ is not an object");

    /* Accepted: valid UTF-8 names, padding spaces, an empty tensor anywhere. */
    size_t len;
    unsigned char *b = make_file(
        "{\"\xc3\xa9t\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},"
        "\"__metadata__\":{}}      ",
        2, &len);
    st_file f;
    d2_error e = {0};
    assert_int_equal(st_parse(&f, b, len, &e), 0);
    assert_int_equal(f.count, 2);
    assert_string_equal(f.tensors[0].name, "\xc3\xa9t\xc3\xa9");
    assert_string_equal(f.tensors[1].name, "z");
    assert_int_equal(f.nmeta, 0);
    st_free(&f);
    free(b);
}

/* Tensors stored out of insertion order in the data come back sorted by offset. */
static void test_offset_order(void **state)
{
    (void)state;
    size_t len;
    unsigned char *b = make_file(
        "{\"second\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[4,8]},"
        "\"first\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
        8, &len);
    st_file f;
    d2_error e = {0};
    assert_int_equal(st_parse(&f, b, len, &e), 0);
    assert_string_equal(f.tensors[0].name, "first");
    assert_string_equal(f.tensors[1].name, "second");
    assert_ptr_equal(f.tensors[1].data, f.buf + len - 4);
    st_free(&f);
    free(b);
}

/* Reference rounding of a float to binary16 in double arithmetic:
 * round-to-nearest-even at the binary16 spacing of x's binade. */
static double ref_round_f16(float x)
{
    double ax = fabs((double)x);
    if (ax >= 65520.0)
        return copysign(INFINITY, x);
    int ex;
    frexp(ax, &ex); /* ax = m * 2^ex, m in [0.5, 1) */
    int e = ex - 1;
    if (e < -14)
        e = -14;
    double ulp = ldexp(1.0, e - 10);
    double q = nearbyint(ax / ulp); /* default rounding: to nearest even */
    return copysign(q * ulp, x);
}

static double ref_round_bf16(float x)
{
    double ax = fabs((double)x);
    int ex;
    frexp(ax, &ex);
    int e = ex - 1;
    if (e < -126)
        e = -126;
    double ulp = ldexp(1.0, e - 7);
    double r = nearbyint(ax / ulp) * ulp;
    if (r >= ldexp(1.0, 128)) /* rounded past the largest bfloat16 */
        r = INFINITY;
    return copysign(r, x);
}

static void test_half_precision(void **state)
{
    (void)state;
    /* Known values. */
    assert_int_equal(st_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(st_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(st_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(st_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(st_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(st_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(st_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(st_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(st_f32_to_f16(ldexpf(1.0f, -24)), 0x0001); /* smallest subnormal */
    assert_int_equal(st_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie -> even (0) */
    assert_int_equal(st_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    assert_int_equal(st_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* tie 1|2 -> 2 */
    assert_int_equal(st_f32_to_f16(ldexpf(5.0f, -25)), 0x0002); /* tie 2|3 -> 2 */
    assert_int_equal(st_f32_to_f16(ldexpf(1.0f, -14)), 0x0400); /* smallest normal */
    assert_int_equal(st_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie -> even */
    assert_int_equal(st_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    uint16_t hn = st_f32_to_f16(NAN);
    assert_int_equal(hn & 0x7c00, 0x7c00);
    assert_int_not_equal(hn & 0x3ff, 0);
    assert_true(isnan(st_f16_to_f32(0x7e00)));
    assert_true(isnan(st_f16_to_f32(0x7c01)));
    assert_true(st_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(st_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(st_f16_to_f32(0x7bff) == 65504.0f);

    assert_int_equal(st_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(st_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(st_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds up to inf */
    assert_int_equal(st_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80); /* tie -> even */
    assert_int_equal(st_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    uint16_t bn = st_f32_to_bf16(NAN);
    assert_int_equal(bn & 0x7f80, 0x7f80);
    assert_int_not_equal(bn & 0x7f, 0);
    /* A NaN whose payload sits only in the low 16 bits stays a NaN. */
    float lownan;
    uint32_t lnb = 0x7f800001u;
    memcpy(&lownan, &lnb, 4);
    assert_true(isnan(st_bf16_to_f32(st_f32_to_bf16(lownan))));
    assert_true(st_bf16_to_f32(0x0001) == ldexpf(1.0f, -133)); /* bf16 subnormal */

    /* Every binary16 and bfloat16 value survives f16 -> f32 -> f16. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            assert_true(isnan(st_f16_to_f32(st_f32_to_f16(f))));
            continue;
        }
        assert_int_equal(st_f32_to_f16(f), h);
        float g = st_bf16_to_f32((uint16_t)h);
        if (!isnan(g))
            assert_int_equal(st_f32_to_bf16(g), h);
    }
    /* Random floats (all binades, incl. subnormal range) round like the reference. */
    uint64_t s = 777;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)xs_next(&s);
        if (i % 2) /* concentrate half of them around the binary16 range */
            u = (u & 0x80000000u) | ((0x30000000u + (u & 0x7ffffffu) * 3) & 0x7fffffffu);
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x))
            continue;
        double want = ref_round_f16(x);
        double got = st_f16_to_f32(st_f32_to_f16(x));
        if (!(got == want) || signbit(got) != signbit(want))
            fail_msg("f16(%a) = %a, expected %a", (double)x, got, want);
        want = ref_round_bf16(x);
        got = st_bf16_to_f32(st_f32_to_bf16(x));
        if (!(got == want) || signbit(got) != signbit(want))
            fail_msg("bf16(%a) = %a, expected %a", (double)x, got, want);
    }
}

/* Write one tensor of dtype t with n elements from raw bytes; parse; return file. */
static void one_tensor(st_file *f, const char *name, st_dtype t, const void *raw, int64_t n)
{
    st_writer w;
    st_writer_init(&w);
    d2_error e = {0};
    assert_int_equal(st_writer_add(&w, name, t, 1, &n, raw, (size_t)n * st_dtype_size(t), &e),
                     0);
    unsigned char *b;
    size_t len;
    assert_int_equal(st_writer_to_memory(&w, &b, &len, &e), 0);
    assert_int_equal(st_parse(f, b, len, &e), 0);
    free(b);
    st_writer_free(&w);
}

static void test_conversions(void **state)
{
    (void)state;
    st_file f;
    d2_error e = {0};
    float out[4];
    int32_t iout[4];

    int64_t i64[4] = {-3, 0, 7, 2147483647};
    one_tensor(&f, "i64", ST_I64, i64, 4);
    assert_int_equal(st_to_f32(&f.tensors[0], out, &e), 0);
    assert_true(out[0] == -3.0f && out[2] == 7.0f && out[3] == 2147483648.0f);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), 0);
    assert_int_equal(iout[0], -3);
    assert_int_equal(iout[3], 2147483647);
    st_free(&f);
    i64[1] = 2147483648ll;
    one_tensor(&f, "big", ST_I64, i64, 4);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), D2_ERANGE);
    assert_msg_has(&e, "tensor \"big\": element 1 = 2147483648 does not fit in int32");
    st_free(&f);

    uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7c00};
    one_tensor(&f, "h", ST_F16, h, 4);
    assert_int_equal(st_to_f32(&f.tensors[0], out, &e), 0);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24));
    assert_true(isinf(out[3]));
    st_free(&f);

    uint16_t bf[3] = {0x3f80, 0x4040, 0xbf00};
    one_tensor(&f, "bf", ST_BF16, bf, 3);
    assert_int_equal(st_to_f32(&f.tensors[0], out, &e), 0);
    assert_true(out[0] == 1.0f && out[1] == 3.0f && out[2] == -0.5f);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), D2_ERANGE);
    assert_msg_has(&e, "element 2 = -0.5 is not an int32 integer");
    st_free(&f);

    double d[3] = {0.1, 4.0, -1e300};
    one_tensor(&f, "d", ST_F64, d, 3);
    assert_int_equal(st_to_f32(&f.tensors[0], out, &e), 0);
    assert_true(out[0] == 0.1f && out[1] == 4.0f && isinf(out[2]));
    st_free(&f);
    double dl[3] = {0.0, 4.0, 9.0};
    one_tensor(&f, "dl", ST_F64, dl, 3);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), 0);
    assert_int_equal(iout[2], 9);
    st_free(&f);

    int8_t i8[3] = {-128, 5, 127};
    one_tensor(&f, "i8", ST_I8, i8, 3);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), 0);
    assert_int_equal(iout[0], -128);
    assert_int_equal(st_to_f32(&f.tensors[0], out, &e), 0);
    assert_true(out[2] == 127.0f);
    st_free(&f);

    uint32_t u32[2] = {5, 0x80000000u};
    one_tensor(&f, "u32", ST_U32, u32, 2);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), D2_ERANGE);
    assert_msg_has(&e, "element 1 = 2147483648");
    st_free(&f);

    uint8_t bl[2] = {1, 0};
    one_tensor(&f, "bool", ST_BOOL, bl, 2);
    assert_int_equal(st_to_i32(&f.tensors[0], iout, &e), 0);
    assert_int_equal(iout[0], 1);
    assert_int_equal(iout[1], 0);
    st_free(&f);

    /* F32 data at an unaligned offset (after a 1-byte tensor) converts intact. */
    st_writer w;
    st_writer_init(&w);
    int64_t one = 1, three = 3;
    uint8_t pad = 9;
    float fv[3] = {1.5f, -2.25f, 1e-3f};
    assert_int_equal(st_writer_add(&w, "pad", ST_U8, 1, &one, &pad, 1, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "f", 1, &three, fv, &e), 0);
    unsigned char *b;
    size_t len;
    assert_int_equal(st_writer_to_memory(&w, &b, &len, &e), 0);
    assert_int_equal(st_parse(&f, b, len, &e), 0);
    const st_tensor *t = st_find(&f, "f");
    assert_int_equal(t->begin, 1);
    assert_int_equal(st_to_f32(t, out, &e), 0);
    assert_memory_equal(out, fv, sizeof fv);
    st_free(&f);
    free(b);
    st_writer_free(&w);
}

/* Deterministic mutations of a valid file: flipped bytes, truncations,
 * changed length fields. Nothing may crash or read out of bounds (ASan), and
 * every refusal carries a message; every acceptance is self-consistent. */
static void test_mutation_smoke(void **state)
{
    (void)state;
    st_writer w;
    build_small(&w);
    d2_error e = {0};
    uint16_t hv[3] = {1, 2, 3};
    int64_t s3 = 3;
    assert_int_equal(st_writer_add(&w, "h", ST_F16, 1, &s3, hv, sizeof hv, &e), 0);
    unsigned char *good;
    size_t len;
    assert_int_equal(st_writer_to_memory(&w, &good, &len, &e), 0);
    uint64_t s = 99;
    int accepted = 0, refused = 0;
    for (int it = 0; it < 4000; it++) {
        unsigned char *b = malloc(len);
        assert_non_null(b);
        memcpy(b, good, len);
        size_t n = len;
        int kind = (int)(xs_next(&s) % 4);
        if (kind == 0) { /* truncate */
            n = (size_t)(xs_next(&s) % len);
        } else if (kind == 1) { /* flip 1..4 random bits anywhere */
            int k = 1 + (int)(xs_next(&s) % 4);
            for (int j = 0; j < k; j++)
                b[xs_next(&s) % len] ^= (unsigned char)(1u << (xs_next(&s) % 8));
        } else if (kind == 2) { /* replace 1..3 header bytes with interesting ones */
            static const unsigned char pick[] = {'"', '{', '}', '[', ']', ',', ':', '0',
                                                 '9', '-', ' ', 0,   0xff, 0xc3, '\\', 'e'};
            int k = 1 + (int)(xs_next(&s) % 3);
            for (int j = 0; j < k; j++)
                b[8 + xs_next(&s) % (len - 8)] = pick[xs_next(&s) % sizeof pick];
        } else { /* change the header length */
            uint64_t h = 0;
            for (int i = 7; i >= 0; i--)
                h = h << 8 | b[i];
            h += (uint64_t)(xs_next(&s) % 17) - 8;
            for (int i = 0; i < 8; i++)
                b[i] = (unsigned char)(h >> (8 * i));
        }
        /* An exact-size heap copy, so ASan catches any read past the end. */
        unsigned char *exact = malloc(n ? n : 1);
        assert_non_null(exact);
        memcpy(exact, b, n);
        st_file f;
        d2_error me = {0};
        int rc = st_parse(&f, exact, n, &me);
        if (rc == 0) {
            accepted++;
            size_t covered = 0;
            for (int i = 0; i < f.count; i++) {
                const st_tensor *t = &f.tensors[i];
                assert_true(t->end >= t->begin);
                assert_int_equal(t->end - t->begin, t->numel * st_dtype_size(t->dtype));
                assert_true((const unsigned char *)t->data + (t->end - t->begin) <= f.buf + f.len);
                covered += t->end - t->begin;
                if (t->numel > 0) {
                    float *tmp = malloc(t->numel * sizeof(float));
                    assert_non_null(tmp);
                    d2_error ce = {0};
                    assert_int_equal(st_to_f32(t, tmp, &ce), 0);
                    free(tmp);
                }
            }
            assert_true(covered <= f.len);
            st_free(&f);
        } else {
            refused++;
            assert_true(rc < 0);
            assert_true(strlen(me.msg) > 10);
        }
        free(exact);
        free(b);
    }
    /* Both outcomes occur (a flipped bit inside tensor data is still valid). */
    assert_true(accepted > 100);
    assert_true(refused > 1000);
    free(good);
    st_writer_free(&w);
}

static void test_file_helpers(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("st");
    char path[512];
    d2_error e = {0};
    snprintf(path, sizeof path, "%s/f.bin", dir);
    const char text[] = "hello, file";
    assert_int_equal(d2_write_file_atomic(path, text, strlen(text), &e), 0);
    unsigned char *b;
    size_t len;
    assert_int_equal(d2_read_file(path, &b, &len, 0, &e), 0);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(b, text, len);
    assert_int_equal(b[len], 0); /* NUL-terminated */
    free(b);
    /* Overwrite atomically with something shorter. */
    assert_int_equal(d2_write_file_atomic(path, "ab", 2, &e), 0);
    assert_int_equal(d2_read_file(path, &b, &len, 2, &e), 0);
    assert_int_equal(len, 2);
    free(b);
    /* Over the limit. */
    assert_int_equal(d2_read_file(path, &b, &len, 1, &e), D2_ERANGE);
    assert_msg_has(&e, "file is 2 bytes, over the limit of 1 bytes");
    assert_null(b);
    /* Empty file. */
    assert_int_equal(d2_write_file_atomic(path, "", 0, &e), 0);
    assert_int_equal(d2_read_file(path, &b, &len, 0, &e), 0);
    assert_int_equal(len, 0);
    free(b);
    /* Missing file, directory, unwritable place. */
    snprintf(path, sizeof path, "%s/none", dir);
    assert_int_equal(d2_read_file(path, &b, &len, 0, &e), D2_ENOTFOUND);
    assert_msg_has(&e, "cannot open");
    assert_msg_has(&e, path);
    assert_int_equal(d2_read_file(dir, &b, &len, 0, &e), D2_EIO);
    assert_msg_has(&e, "is a directory");
    snprintf(path, sizeof path, "%s/no/such/dir/x", dir);
    assert_int_not_equal(d2_write_file_atomic(path, "x", 1, &e), 0);
    assert_msg_has(&e, "cannot create");
    /* A relative path (directory ".") works too. */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(d2_write_file_atomic("rel.bin", "xyz", 3, &e), 0);
    assert_int_equal(d2_read_file("rel.bin", &b, &len, 0, &e), 0);
    assert_int_equal(len, 3);
    free(b);
    assert_int_equal(chdir(cwd), 0);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_roundtrip_every_dtype),
        cmocka_unit_test(test_deterministic_bytes),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_malformed_lengths),
        cmocka_unit_test(test_malformed_offsets),
        cmocka_unit_test(test_malformed_tensors),
        cmocka_unit_test(test_malformed_header),
        cmocka_unit_test(test_offset_order),
        cmocka_unit_test(test_half_precision),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_mutation_smoke),
        cmocka_unit_test(test_file_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
