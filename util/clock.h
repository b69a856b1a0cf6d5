/*
 * util/clock.h - the two clock readings shale needs: seconds on a monotonic
 * clock (pacing, timeouts, token expiry) and an absolute CLOCK_REALTIME
 * deadline for pthread_cond_timedwait.
 */
#ifndef SHL_UTIL_CLOCK_H
#define SHL_UTIL_CLOCK_H

#include <time.h>

static inline double shl_clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* *ts = now + ms milliseconds, for pthread_cond_timedwait() */
static inline void shl_clock_deadline(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

#endif
