/*
 * util/json.h - JSON through json-c with caps: documents are size- and
 * depth-limited and parsed strictly; typed getters return NULL/errors instead
 * of guessing. Only util/json.c includes <json-c/...>; other modules see the
 * opaque shl_json (a json-c object, reference-counted).
 */
#ifndef SHL_UTIL_JSON_H
#define SHL_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct json_object shl_json;

#define SHL_JSON_MAX_DEPTH 64

/* Parse `len` bytes (need not be NUL-terminated). Refuses documents over
 * `cap` bytes (SHL_ELIMIT), nesting deeper than SHL_JSON_MAX_DEPTH, trailing
 * garbage and non-strict JSON (SHL_EFORMAT). `what` names the document in
 * errors ("manifest.json", "blob sha256:..."). */
int shl_json_parse(shl_json **out, const void *buf, size_t len, size_t cap, const char *what);
shl_json *shl_json_ref(shl_json *j);
void shl_json_put(shl_json *j);

/* Type checks (NULL-safe: false for NULL). */
int shl_json_is_object(const shl_json *j);
int shl_json_is_array(const shl_json *j);
int shl_json_is_string(const shl_json *j);
int shl_json_is_int(const shl_json *j);

/* Object member or NULL (missing, or j is not an object). Borrowed. */
shl_json *shl_json_get(const shl_json *j, const char *key);
/* String member or NULL (missing or not a string). Borrowed. */
const char *shl_json_get_str(const shl_json *j, const char *key);
/* Integer member: 0, SHL_ENOTFOUND if missing, SHL_EFORMAT if not an integer. */
int shl_json_get_int(const shl_json *j, const char *key, int64_t *out);
/* The string value of j itself, or NULL. */
const char *shl_json_str(const shl_json *j);
int64_t shl_json_int(const shl_json *j);

/* Arrays: length (0 if not an array) and element (NULL if out of range). */
size_t shl_json_len(const shl_json *arr);
shl_json *shl_json_at(const shl_json *arr, size_t i);

/* Objects: call fn for each member in document order; non-zero stops. */
typedef int (*shl_json_member_fn)(void *ctx, const char *key, shl_json *val);
int shl_json_foreach(const shl_json *obj, shl_json_member_fn fn, void *ctx);

/* Builders. Constructors return NULL on allocation failure; the setters take
 * ownership of `val` (also on failure) and return 0 or SHL_ENOMEM. */
shl_json *shl_json_new_object(void);
shl_json *shl_json_new_array(void);
shl_json *shl_json_new_string(const char *s);
shl_json *shl_json_new_stringn(const char *s, size_t n);
shl_json *shl_json_new_int(int64_t v);
shl_json *shl_json_new_bool(int v);
int shl_json_set(shl_json *obj, const char *key, shl_json *val);
int shl_json_set_str(shl_json *obj, const char *key, const char *s);
int shl_json_set_int(shl_json *obj, const char *key, int64_t v);
int shl_json_push(shl_json *arr, shl_json *val);

/* Serialize compactly (no spaces, no escaped '/'), or indented with 2 spaces
 * when pretty. The string is owned by j and valid until j changes or is put. */
const char *shl_json_dump(shl_json *j, int pretty, size_t *len_out);

#endif
