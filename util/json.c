/*
 * util/json.c - capped, strict JSON parsing and building over json-c
 * (see util/json.h). The only file that includes json-c.
 */
#include <json-c/json.h>
#include <string.h>

#include "util/err.h"
#include "util/json.h"

int shl_json_parse(shl_json **out, const void *buf, size_t len, size_t cap, const char *what)
{
	struct json_tokener *tok;
	struct json_object *j;
	enum json_tokener_error jerr;
	size_t used;
	int rc = 0;

	*out = NULL;
	if (len > cap)
		return shl_err(SHL_ELIMIT, "%s: %zu bytes exceeds the %zu-byte cap", what, len, cap);
	if (len > INT32_MAX)
		return shl_err(SHL_ELIMIT, "%s: too large", what);
	tok = json_tokener_new_ex(SHL_JSON_MAX_DEPTH);
	if (!tok)
		return shl_err(SHL_ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	j = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	if (!j || jerr != json_tokener_success) {
		if (jerr == json_tokener_continue)
			rc = shl_err(SHL_EFORMAT, "%s: truncated JSON", what);
		else if (jerr == json_tokener_error_depth)
			rc = shl_err(SHL_ELIMIT, "%s: JSON nested deeper than %d", what, SHL_JSON_MAX_DEPTH);
		else
			rc = shl_err(SHL_EFORMAT, "%s: invalid JSON at byte %zu: %s", what, used,
				     json_tokener_error_desc(jerr));
		goto out;
	}
	/* only whitespace may follow the document */
	for (size_t i = used; i < len; i++) {
		char c = ((const char *)buf)[i];
		if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
			rc = shl_err(SHL_EFORMAT, "%s: trailing data after JSON at byte %zu", what, i);
			goto out;
		}
	}
	*out = j;
	j = NULL;
out:
	json_object_put(j);
	json_tokener_free(tok);
	return rc;
}

shl_json *shl_json_ref(shl_json *j) { return json_object_get(j); }
void shl_json_put(shl_json *j) { json_object_put(j); }

int shl_json_is_object(const shl_json *j) { return j && json_object_is_type(j, json_type_object); }
int shl_json_is_array(const shl_json *j) { return j && json_object_is_type(j, json_type_array); }
int shl_json_is_string(const shl_json *j) { return j && json_object_is_type(j, json_type_string); }
int shl_json_is_int(const shl_json *j) { return j && json_object_is_type(j, json_type_int); }

shl_json *shl_json_get(const shl_json *j, const char *key)
{
	struct json_object *v = NULL;

	if (!shl_json_is_object(j) || !json_object_object_get_ex(j, key, &v))
		return NULL;
	return v;
}

const char *shl_json_get_str(const shl_json *j, const char *key)
{
	return shl_json_str(shl_json_get(j, key));
}

int shl_json_get_int(const shl_json *j, const char *key, int64_t *out)
{
	shl_json *v = shl_json_get(j, key);

	if (!v)
		return SHL_ENOTFOUND;
	if (!shl_json_is_int(v))
		return shl_err(SHL_EFORMAT, "JSON field '%s' is not an integer", key);
	*out = json_object_get_int64(v);
	return 0;
}

const char *shl_json_str(const shl_json *j)
{
	return shl_json_is_string(j) ? json_object_get_string((struct json_object *)j) : NULL;
}

int64_t shl_json_int(const shl_json *j)
{
	return shl_json_is_int(j) ? json_object_get_int64(j) : 0;
}

size_t shl_json_len(const shl_json *arr)
{
	return shl_json_is_array(arr) ? json_object_array_length(arr) : 0;
}

shl_json *shl_json_at(const shl_json *arr, size_t i)
{
	if (i >= shl_json_len(arr))
		return NULL;
	return json_object_array_get_idx(arr, i);
}

int shl_json_foreach(const shl_json *obj, shl_json_member_fn fn, void *ctx)
{
	struct json_object_iterator it, end;

	if (!shl_json_is_object(obj))
		return 0;
	it = json_object_iter_begin((struct json_object *)obj);
	end = json_object_iter_end((struct json_object *)obj);
	while (!json_object_iter_equal(&it, &end)) {
		int rc = fn(ctx, json_object_iter_peek_name(&it), json_object_iter_peek_value(&it));
		if (rc)
			return rc;
		json_object_iter_next(&it);
	}
	return 0;
}

shl_json *shl_json_new_object(void) { return json_object_new_object(); }
shl_json *shl_json_new_array(void) { return json_object_new_array(); }
shl_json *shl_json_new_string(const char *s) { return json_object_new_string(s); }
shl_json *shl_json_new_stringn(const char *s, size_t n)
{
	return n > INT32_MAX ? NULL : json_object_new_string_len(s, (int)n);
}
shl_json *shl_json_new_int(int64_t v) { return json_object_new_int64(v); }
shl_json *shl_json_new_bool(int v) { return json_object_new_boolean(v ? 1 : 0); }

int shl_json_set(shl_json *obj, const char *key, shl_json *val)
{
	if (!obj || !val || json_object_object_add(obj, key, val) != 0) {
		json_object_put(val);
		return shl_err(SHL_ENOMEM, "out of memory building JSON");
	}
	return 0;
}

int shl_json_set_str(shl_json *obj, const char *key, const char *s)
{
	return shl_json_set(obj, key, json_object_new_string(s));
}

int shl_json_set_int(shl_json *obj, const char *key, int64_t v)
{
	return shl_json_set(obj, key, json_object_new_int64(v));
}

int shl_json_push(shl_json *arr, shl_json *val)
{
	if (!arr || !val || json_object_array_add(arr, val) != 0) {
		json_object_put(val);
		return shl_err(SHL_ENOMEM, "out of memory building JSON");
	}
	return 0;
}

const char *shl_json_dump(shl_json *j, int pretty, size_t *len_out)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
		    (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN);
	size_t len = 0;
	const char *s = json_object_to_json_string_length(j, flags, &len);

	if (len_out)
		*len_out = len;
	return s;
}
