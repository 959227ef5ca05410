#ifndef TALLY_CCURL_SHIM_H
#define TALLY_CCURL_SHIM_H
#include <curl/curl.h>

/*
 * curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call.
 * One non-variadic wrapper per argument type that libcurl documents for an
 * option; the Swift caller picks the wrapper matching the option's type.
 */

/* Options taking a `long`: flags, timeouts in milliseconds, enum values. */
static inline CURLcode tally_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
  return curl_easy_setopt(handle, option, value);
}

/* Options taking an object pointer: callback user data, curl_slist, error buffer. */
static inline CURLcode tally_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
  return curl_easy_setopt(handle, option, value);
}

/* Options taking a C string; libcurl copies it, so it may be freed on return. */
static inline CURLcode tally_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
  return curl_easy_setopt(handle, option, value);
}

/* Options taking a curl_off_t: sizes such as CURLOPT_INFILESIZE_LARGE. */
static inline CURLcode tally_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
  return curl_easy_setopt(handle, option, value);
}

/* CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION share this signature. */
static inline CURLcode tally_curl_easy_setopt_write_callback(CURL *handle, CURLoption option,
                                                             curl_write_callback value) {
  return curl_easy_setopt(handle, option, value);
}

/* CURLOPT_READFUNCTION. */
static inline CURLcode tally_curl_easy_setopt_read_callback(CURL *handle, CURLoption option,
                                                            curl_read_callback value) {
  return curl_easy_setopt(handle, option, value);
}

/* CURLOPT_XFERINFOFUNCTION. */
static inline CURLcode tally_curl_easy_setopt_xferinfo_callback(CURL *handle, CURLoption option,
                                                                curl_xferinfo_callback value) {
  return curl_easy_setopt(handle, option, value);
}

/* Information libcurl answers as a `long`, such as CURLINFO_RESPONSE_CODE. */
static inline CURLcode tally_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
  return curl_easy_getinfo(handle, info, value);
}
#endif
