/*
 * inspect.h - `ferryd --inspect DIR`: what a store holds, offline.
 *
 *   ferryd --inspect DIR [--json]
 *   ferryd --inspect DIR --topic T [--from-seq N] [--count K] [--json]
 *
 * Prints the store's topics (messages, bytes, first and last sequence, the
 * last publish time), its durable consumers (next sequence, ack floor,
 * pending, owner), and with --topic the messages of T from N (default: the
 * oldest stored) on, at most K (default 100; 0: all): sequence, publish
 * time, headers, key and payload (text when printable, escaped otherwise;
 * in JSON base64 when not UTF-8). --json prints one JSON document instead.
 *
 * Like --verify, it first brings a store no broker runs to the state a
 * start would (the log replayed: store_recover()) and says how many log
 * records that took; next to a live broker it reads the broker's last
 * committed snapshot, read-only. Exit status 0, 1 (the store cannot be
 * read, no such topic), 2 (bad command line).
 */
#ifndef FERRY_INSPECT_H
#define FERRY_INSPECT_H

/* argv[0] is "--inspect"; the rest are its operands and options. Returns
 * the exit status. Writes to stdout, errors to stderr. */
int inspect_main(int argc, char **argv);

#endif
