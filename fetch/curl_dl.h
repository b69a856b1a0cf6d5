/*
 * fetch/curl_dl.h - libcurl is opened on first use (fetch/curl_dl.c).
 */
#ifndef SHL_FETCH_CURL_DL_H
#define SHL_FETCH_CURL_DL_H

/* Open libcurl.so.4 and run curl_global_init once; 0, or SHL_EUNSUPPORTED
 * with a message naming what is missing. Call before any curl function. */
int shl_curl_load(void);

#endif
