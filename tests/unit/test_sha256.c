/* test_sha256.c - SHA-256 against the FIPS 180-4 / NIST example vectors, and
 * chunked updates equal to one-shot hashing. */
#include "testutil.h"

#include "sha256.h"

static void check_hex(const char *msg, size_t len, const char *want)
{
    char hex[65];
    sha256_hex(msg, len, hex);
    assert_string_equal(hex, want);
}

static void test_empty(void **state)
{
    (void)state;
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_abc(void **state)
{
    (void)state;
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_448_bit(void **state)
{
    (void)state;
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_int_equal(strlen(m), 56);
    check_hex(m, 56, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_896_bit(void **state)
{
    (void)state;
    const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                    "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    assert_int_equal(strlen(m), 112);
    check_hex(m, 112, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state)
{
    (void)state;
    /* One-shot and in 1000-byte updates. */
    size_t n = 1000000;
    char *m = malloc(n);
    assert_non_null(m);
    memset(m, 'a', n);
    const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    check_hex(m, n, want);
    sha256_ctx c;
    unsigned char d[32];
    char hex[65];
    sha256_init(&c);
    for (size_t i = 0; i < n; i += 1000)
        sha256_update(&c, m + i, 1000);
    sha256_final(&c, d);
    sha256_to_hex(d, hex);
    assert_string_equal(hex, want);
    free(m);
}

/* Padding boundaries: 55, 56, 63, 64, 65 bytes straddle the length field. */
static void test_padding_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *hex;
    } cases[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
    };
    char m[65];
    memset(m, 'a', sizeof m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_hex(m, cases[i].len, cases[i].hex);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_chunked_equals_oneshot(void **state)
{
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int trial = 0; trial < 50; trial++) {
        size_t n = (size_t)(xorshift(&s) % 5000);
        unsigned char *m = malloc(n + 1);
        assert_non_null(m);
        for (size_t i = 0; i < n; i++)
            m[i] = (unsigned char)xorshift(&s);
        char one[65], many[65];
        sha256_hex(m, n, one);
        sha256_ctx c;
        unsigned char d[32];
        sha256_init(&c);
        size_t off = 0;
        while (off < n) {
            size_t k = (size_t)(xorshift(&s) % 150); /* 0-length updates included */
            if (k > n - off)
                k = n - off;
            sha256_update(&c, m + off, k);
            off += k;
        }
        sha256_final(&c, d);
        sha256_to_hex(d, many);
        assert_string_equal(one, many);
        free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_abc),
        cmocka_unit_test(test_448_bit),
        cmocka_unit_test(test_896_bit),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_padding_boundaries),
        cmocka_unit_test(test_chunked_equals_oneshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
