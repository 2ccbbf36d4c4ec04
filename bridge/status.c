// status.c: the bridge's status page (see status.h).
#include "bridge/status.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "bridge/outer.h"
#include "bridge/server_internal.h"
#include "models/codec.h"
#include "bridge/status_page.h"
#include "models/common.h"

static void json_add(json_object *o, const char *k, json_object *v) { json_object_object_add(o, k, v); }

// A JSON number, or null where x is not finite (json-c would write Infinity or NaN, which
// JSON.parse refuses).
static json_object *json_num(double x) { return isfinite(x) ? json_object_new_double(x) : NULL; }

// GET /status.json. Read-only: no tokens or addresses in it.
static void on_status_json(struct evhttp_request *req, void *arg) {
    BridgeServer *b = arg;
    double now = cx_now();
    json_object *o = json_object_new_object();
    json_add(o, "step", json_object_new_int64(b->tr->optim.step));
    json_add(o, "total_steps", json_object_new_int64(b->o.total_steps));
    json_add(o, "loss", b->status.loss_n > 0 ? json_num(b->status.last_loss) : NULL);
    json_add(o, "samples_per_s", json_num(b->status.samples_per_s));
    json_add(o, "rounds", json_object_new_int64((int64_t)br_step(b)));
    // the averaging: sync (a round per step) or diloco (outer rounds of H inner steps)
    json_add(o, "mode", json_object_new_string(b->outer ? "diloco" : "sync"));
    json_add(o, "inner_steps", json_object_new_int64(b->outer ? br_outer_inner_steps(b->outer) : 1));
    json_add(o, "round_open", json_object_new_boolean(b->rounds.core.open));
    json_add(o, "global_batch", json_object_new_int64(b->tr->global_batch));
    json_add(o, "trainers", json_object_new_int(hybrid_n_trainers(b->h)));
    json_add(o, "live_volunteers", json_object_new_int(bridge_live_volunteers(b)));
    json_add(o, "uptime_s", json_num(now - b->t_start));
    json_object *vs = json_object_new_array();
    for (Vol *v = b->vols; v; v = v->next) {
        json_object *j = json_object_new_object();
        char id[9];
        memcpy(id, v->id_hex, 8);
        id[8] = 0;
        const Conn *c = v->conn;
        const char *state = !c || c->closing ? "gone" : c->state == C_LIVE ? "live"
                            : c->snap ? "downloading" : "connected";
        json_add(j, "name", json_object_new_string(v->name));
        json_add(j, "identity", json_object_new_string(id));
        json_add(j, "state", json_object_new_string(state));
        json_add(j, "connected", json_object_new_boolean(c && !c->closing));
        json_add(j, "samples_accepted", json_object_new_int64((int64_t)v->fresh));
        json_add(j, "samples_late", json_object_new_int64((int64_t)v->stale));
        json_add(j, "samples_dropped", json_object_new_int64((int64_t)v->dropped));
        json_add(j, "samples_lost", json_object_new_int64((int64_t)v->lost));
        json_add(j, "uploads", json_object_new_int64((int64_t)v->uploads));
        json_add(j, "connects", json_object_new_int64((int64_t)v->connects));
        json_add(j, "upload_mbit_s", v->up_mbit > 0 ? json_num(v->up_mbit) : NULL);
        json_add(j, "bytes_sent", json_num(v->bytes_in));
        json_add(j, "bytes_received", json_num(v->bytes_out));
        json_add(j, "codec", c && c->codec ? json_object_new_string(codec_find(c->codec)->name) : NULL);
        uint64_t trained = v->fresh + v->stale;  // its bytes both ways per sample it contributed
        json_add(j, "bytes_per_sample",
                 trained ? json_num((v->bytes_in + v->bytes_out) / (double)trained) : NULL);
        json_add(j, "first_seen_s", json_num(v->first_seen));
        json_add(j, "last_seen_s_ago", json_num(now - b->t_start - v->last_seen));
        json_object_array_add(vs, j);
    }
    json_add(o, "volunteers", vs);
    json_object *hist = json_object_new_array();
    for (int i = 0; i < b->status.loss_n; i++) {
        json_object *pt = json_object_new_array();
        json_object_array_add(pt, json_object_new_int64((int64_t)b->status.loss_hist[i][0]));
        json_object_array_add(pt, json_num(b->status.loss_hist[i][1]));
        json_object_array_add(hist, pt);
    }
    json_add(o, "loss_history", hist);
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, text, strlen(text));
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Access-Control-Allow-Origin", "*");
    evhttp_send_reply(req, HTTP_OK, "OK", buf);
    evbuffer_free(buf);
    json_object_put(o);
}

static void on_status_page(struct evhttp_request *req, void *arg) {
    (void)arg;
    const char *uri = evhttp_request_get_uri(req);
    if (strcmp(uri, "/") != 0 && strcmp(uri, "/index.html") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, "not found: the bridge serves / and /status.json");
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, BR_STATUS_PAGE, sizeof BR_STATUS_PAGE - 1);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, HTTP_OK, "OK", buf);
    evbuffer_free(buf);
}

// ---- the connection cap ----
// libevent 2.1's evhttp has no connection limit (evhttp_set_max_connections is 2.2), so the
// page counts its connections itself: evhttp asks this callback for each new connection's
// bufferevent; the page keeps a reference to it, and when evhttp frees the connection (its
// callbacks are then cleared) the tick drops that reference. At the cap the listener is
// disabled: further connections wait in the kernel's backlog and take no descriptor here.

static void status_hold(BridgeServer *b, int hold) {
    BrAcceptGuard *g = &b->status_guard;
    if (hold == g->held) return;
    g->held = hold;
    if (hold) evconnlistener_disable(g->lis);
    else if (!g->paused) evconnlistener_enable(g->lis);
    if (hold && !b->status_cap_logged) {
        b->status_cap_logged = 1;
        br_log(b, "status page: %d connections open, its maximum: not accepting more until some "
               "close (logged once)", b->o.max_status_conns);
    }
}

static struct bufferevent *status_new_bev(struct event_base *base, void *arg) {
    BridgeServer *b = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    CHECK(bev, "bufferevent_socket_new failed");
    br_accept_guard_ok(b, &b->status_guard);
    bufferevent_incref(bev);
    if (b->status_n == b->status_bevs_cap) {  // libevent may accept a few past the cap in one turn
        b->status_bevs_cap *= 2;
        b->status_bevs = realloc(b->status_bevs, (size_t)b->status_bevs_cap * sizeof *b->status_bevs);
        CHECK(b->status_bevs, "out of memory");
    }
    b->status_bevs[b->status_n++] = bev;
    if (b->status_n >= b->o.max_status_conns) status_hold(b, 1);
    return bev;
}

void br_status_tick(BridgeServer *b) {
    if (!b->status.http) return;
    int k = 0;
    for (int i = 0; i < b->status_n; i++) {
        struct bufferevent *bev = b->status_bevs[i];
        bufferevent_data_cb r, w;
        bufferevent_event_cb e;
        void *arg;
        bufferevent_getcb(bev, &r, &w, &e, &arg);
        if (!r && !w && !e) bufferevent_decref(bev);  // evhttp freed it: closes the socket
        else b->status_bevs[k++] = bev;
    }
    b->status_n = k;
    if (b->status_n < b->o.max_status_conns) status_hold(b, 0);
}

int br_status_start(BridgeServer *b, char *err) {
    char host[256];
    const char *colon = strrchr(b->o.status_listen, ':');
    if (!colon || colon == b->o.status_listen || (size_t)(colon - b->o.status_listen) >= sizeof host)
        return cx_err(err, "status address '%s' is not HOST:PORT", b->o.status_listen);
    memcpy(host, b->o.status_listen, (size_t)(colon - b->o.status_listen));
    host[colon - b->o.status_listen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return cx_err(err, "status port '%s' is not 1..65535", colon + 1);
    struct evhttp *http = b->status.http = evhttp_new(b->base);
    CHECK(http, "evhttp_new failed");
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(http, 8192);
    evhttp_set_max_body_size(http, 0);
    evhttp_set_timeout(http, 10);
    evhttp_set_cb(http, "/status.json", on_status_json, b);
    evhttp_set_gencb(http, on_status_page, b);
    if (b->o.max_status_conns < 1) b->o.max_status_conns = 1;
    b->status_bevs_cap = b->o.max_status_conns + 8;
    b->status_bevs = cx_calloc((size_t)b->status_bevs_cap, sizeof *b->status_bevs);
    evhttp_set_bevcb(http, status_new_bev, b);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
    if (!bound)
        return cx_err(err, "cannot serve the status page on %s: %s", b->o.status_listen, strerror(errno));
    br_accept_guard_init(b, &b->status_guard, evhttp_bound_socket_get_listener(bound), "status page");
    br_log(b, "status page on http://%s/ (and /status.json)", b->o.status_listen);
    return 0;
}

void br_status_note_step(BridgeServer *b, const StepResult *r) {
    StatusPage *s = &b->status;
    double t = cx_now();
    if (s->t_last_step > 0 && t > s->t_last_step) s->samples_per_s = (double)r->samples / (t - s->t_last_step);
    s->t_last_step = t;
    s->last_loss = r->loss;
    if (s->loss_n == LOSS_HISTORY) {  // keep every other point: the curve stays whole
        for (int i = 0; i < LOSS_HISTORY / 2; i++) {
            s->loss_hist[i][0] = s->loss_hist[2 * i][0];
            s->loss_hist[i][1] = s->loss_hist[2 * i][1];
        }
        s->loss_n = LOSS_HISTORY / 2;
    }
    s->loss_hist[s->loss_n][0] = (float)r->step;
    s->loss_hist[s->loss_n][1] = (float)r->loss;
    s->loss_n++;
}

void br_status_free(BridgeServer *b) {
    if (b->status.http) evhttp_free(b->status.http);
    b->status.http = NULL;
    for (int i = 0; i < b->status_n; i++) bufferevent_decref(b->status_bevs[i]);
    free(b->status_bevs);
    b->status_bevs = NULL;
    b->status_n = 0;
    br_accept_guard_free(&b->status_guard);
}
