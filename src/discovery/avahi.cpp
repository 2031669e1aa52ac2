#include "discovery/avahi.h"

#if CLAWBOT_HAVE_AVAHI

#include <algorithm>
#include <memory>
#include <mutex>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/simple-watch.h>
#include <avahi-common/strlst.h>
#include <avahi-common/thread-watch.h>

#include "discovery/log.h"

namespace clawbot::discovery::avahi {

namespace {

using Clock = std::chrono::steady_clock;

// Owning handles of the Avahi client library: each freed by its own function, once, on every path.
template <auto free_function>
struct AvahiDeleter {
  template <typename T>
  void operator()(T* handle) const noexcept {
    free_function(handle);
  }
};
using SimplePollPtr = std::unique_ptr<AvahiSimplePoll, AvahiDeleter<avahi_simple_poll_free>>;
using ThreadedPollPtr = std::unique_ptr<AvahiThreadedPoll, AvahiDeleter<avahi_threaded_poll_free>>;
using ClientPtr = std::unique_ptr<AvahiClient, AvahiDeleter<avahi_client_free>>;
using BrowserPtr = std::unique_ptr<AvahiServiceBrowser, AvahiDeleter<avahi_service_browser_free>>;
using StringListPtr = std::unique_ptr<AvahiStringList, AvahiDeleter<avahi_string_list_free>>;
using StringPtr = std::unique_ptr<char, AvahiDeleter<avahi_free>>;  // text Avahi allocated

class Publisher final : public Advertiser {
 public:
  Publisher(ServiceInfo service, int interface_index, ThreadedPollPtr poll)
      : service_(std::move(service)), interface_(interface_index), poll_(std::move(poll)) {
    name_ = service_.instance;
  }

  // The client's state callback: called first from inside avahi_client_new, later from the poll thread.
  static void on_client(AvahiClient* client, AvahiClientState state, void* self_ptr) {
    auto* self = static_cast<Publisher*>(self_ptr);
    if (state == AVAHI_CLIENT_S_RUNNING) {
      self->create(client);
    } else if (state == AVAHI_CLIENT_S_COLLISION || state == AVAHI_CLIENT_S_REGISTERING) {
      if (self->group_) avahi_entry_group_reset(self->group_);  // re-added once the host name is settled
    } else if (state == AVAHI_CLIENT_FAILURE) {
      log().warn("mdns: lost the Avahi daemon ({}); '{}' is no longer advertised",
                 avahi_strerror(avahi_client_errno(client)), self->name_);
    }
  }

  void set_client(ClientPtr client) { client_ = std::move(client); }
  bool start() { return started_ = avahi_threaded_poll_start(poll_.get()) >= 0; }

  ~Publisher() override {
    if (started_) avahi_threaded_poll_stop(poll_.get());
    // Freeing the client frees its entry group: the daemon withdraws the service (goodbye packets). The
    // client goes before the poll it runs on.
    client_.reset();
    poll_.reset();
    if (started_) log().info("mdns: withdrew '{}' (Avahi)", name_);
  }

  std::string_view backend() const noexcept override { return "avahi"; }
  std::string instance() const override {
    std::lock_guard lock(mutex_);
    return name_;
  }

 private:
  static void on_group(AvahiEntryGroup* group, AvahiEntryGroupState state, void* self_ptr) {
    auto* self = static_cast<Publisher*>(self_ptr);
    if (state == AVAHI_ENTRY_GROUP_ESTABLISHED) {
      log().info("mdns: advertising '{}' ({} port {}) through the Avahi daemon", self->name_, kServiceType,
                 self->service_.port);
    } else if (state == AVAHI_ENTRY_GROUP_COLLISION) {
      const StringPtr alt(avahi_alternative_service_name(self->name_.c_str()));
      log().warn("mdns: another host announces '{}'; renamed to '{}'", self->name_, alt.get());
      {
        std::lock_guard lock(self->mutex_);
        self->name_ = alt.get();
      }
      self->create(avahi_entry_group_get_client(group));
    } else if (state == AVAHI_ENTRY_GROUP_FAILURE) {
      log().warn("mdns: Avahi could not publish '{}': {}", self->name_,
                 avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(group))));
    }
  }

  void create(AvahiClient* client) {
    if (!group_) group_ = avahi_entry_group_new(client, on_group, this);
    if (!group_) {
      log().warn("mdns: Avahi refused an entry group: {}", avahi_strerror(avahi_client_errno(client)));
      return;
    }
    avahi_entry_group_reset(group_);
    StringListPtr txt;
    for (const auto& [k, v] : service_.txt)
      txt.reset(avahi_string_list_add_pair(txt.release(), k.c_str(), v.c_str()));
    const std::string type(kServiceType);
    int rc = avahi_entry_group_add_service_strlst(group_, interface_, AVAHI_PROTO_UNSPEC, AvahiPublishFlags{},
                                                  name_.c_str(), type.c_str(), nullptr, nullptr,
                                                  service_.port, txt.get());
    txt.reset();
    if (rc == AVAHI_ERR_COLLISION) {
      on_group(group_, AVAHI_ENTRY_GROUP_COLLISION, this);
      return;
    }
    if (rc >= 0) rc = avahi_entry_group_commit(group_);
    if (rc < 0) log().warn("mdns: Avahi could not publish '{}': {}", name_, avahi_strerror(rc));
  }

  ServiceInfo service_;
  AvahiIfIndex interface_;  // AVAHI_IF_UNSPEC (-1): every interface
  ThreadedPollPtr poll_;
  ClientPtr client_;
  AvahiEntryGroup* group_ = nullptr;  // the client's: freed with it
  bool started_ = false;
  mutable std::mutex mutex_;  // name_: renamed on the poll thread
  std::string name_;
};

struct BrowseState {
  AvahiClient* client = nullptr;
  std::vector<Found> found;
  int pending = 0;  // resolutions under way
  bool all_for_now = false;
  bool failed = false;
};

void add_found(BrowseState& st, Found f) {
  const auto it = std::find_if(st.found.begin(), st.found.end(),
                               [&](const Found& x) { return x.instance == f.instance; });
  if (it == st.found.end()) {
    st.found.push_back(std::move(f));
    return;
  }
  for (auto& a : f.addresses)  // the same service resolved on another interface or protocol
    if (std::find(it->addresses.begin(), it->addresses.end(), a) == it->addresses.end())
      it->addresses.push_back(a);
}

void on_resolved(AvahiServiceResolver* r, AvahiIfIndex, AvahiProtocol, AvahiResolverEvent event,
                 const char* name, const char*, const char*, const char* host, const AvahiAddress* address,
                 uint16_t port, AvahiStringList* txt, AvahiLookupResultFlags, void* st_ptr) {
  auto& st = *static_cast<BrowseState*>(st_ptr);
  if (event == AVAHI_RESOLVER_FOUND) {
    Found f;
    f.instance = name;
    f.host = host ? host : "";
    f.port = port;
    f.source = "avahi";
    f.ttl = 120;  // the daemon keeps the records fresh; it does not tell their TTL
    char text[AVAHI_ADDRESS_STR_MAX] = {};
    if (address && avahi_address_snprint(text, sizeof text, address)) f.addresses.emplace_back(text);
    for (AvahiStringList* i = txt; i; i = avahi_string_list_get_next(i)) {
      char* key_text = nullptr;
      char* value_text = nullptr;
      if (avahi_string_list_get_pair(i, &key_text, &value_text, nullptr) == 0) {
        const StringPtr key(key_text), value(value_text);
        if (!f.txt.contains(key.get())) f.txt[key.get()] = value ? value.get() : "";
      }
    }
    add_found(st, std::move(f));
  }
  avahi_service_resolver_free(r);
  --st.pending;
}

void on_browse(AvahiServiceBrowser*, AvahiIfIndex interface, AvahiProtocol protocol, AvahiBrowserEvent event,
               const char* name, const char* type, const char* domain, AvahiLookupResultFlags, void* st_ptr) {
  auto& st = *static_cast<BrowseState*>(st_ptr);
  switch (event) {
    case AVAHI_BROWSER_NEW:
      if (avahi_service_resolver_new(st.client, interface, protocol, name, type, domain, AVAHI_PROTO_UNSPEC,
                                     AvahiLookupFlags{}, on_resolved, &st))
        ++st.pending;
      break;
    case AVAHI_BROWSER_REMOVE:
      std::erase_if(st.found, [&](const Found& f) { return f.instance == name; });
      break;
    case AVAHI_BROWSER_ALL_FOR_NOW:
      st.all_for_now = true;
      break;
    case AVAHI_BROWSER_FAILURE:
      st.failed = true;
      break;
    case AVAHI_BROWSER_CACHE_EXHAUSTED:
      break;
  }
}

}  // namespace

bool available(std::string* why) {
  const SimplePollPtr poll(avahi_simple_poll_new());
  if (!poll) return false;
  int error = 0;
  const ClientPtr client(
      avahi_client_new(avahi_simple_poll_get(poll.get()), AvahiClientFlags{}, nullptr, nullptr, &error));
  const bool ok = client != nullptr;
  if (!ok && why) *why = std::string("no Avahi daemon (") + avahi_strerror(error) + ")";
  return ok;
}

std::unique_ptr<Advertiser> start_publisher(const ServiceInfo& service, int interface_index,
                                            std::string* why) {
  ThreadedPollPtr poll(avahi_threaded_poll_new());
  if (!poll) {
    if (why) *why = "avahi_threaded_poll_new failed";
    return nullptr;
  }
  AvahiThreadedPoll* const poll_handle = poll.get();
  auto publisher = std::make_unique<Publisher>(service, interface_index, std::move(poll));
  int error = 0;
  ClientPtr client(avahi_client_new(avahi_threaded_poll_get(poll_handle), AvahiClientFlags{},
                                    Publisher::on_client, publisher.get(), &error));
  if (!client) {
    if (why) *why = std::string("no Avahi daemon (") + avahi_strerror(error) + ")";
    return nullptr;
  }
  publisher->set_client(std::move(client));
  if (!publisher->start()) {
    if (why) *why = "cannot start Avahi's event thread";
    return nullptr;
  }
  return publisher;
}

std::optional<std::vector<Found>> browse(std::chrono::milliseconds wait, std::string_view service_type) {
  const SimplePollPtr poll(avahi_simple_poll_new());
  if (!poll) return std::nullopt;
  BrowseState st;
  int error = 0;
  // Freed in reverse order: the browser, then the client (with the resolvers still running), then the poll.
  const ClientPtr client(
      avahi_client_new(avahi_simple_poll_get(poll.get()), AvahiClientFlags{}, nullptr, nullptr, &error));
  if (!client) return std::nullopt;
  st.client = client.get();
  const std::string type(service_type);
  const BrowserPtr browser(avahi_service_browser_new(st.client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                     type.c_str(), nullptr, AvahiLookupFlags{}, on_browse,
                                                     &st));
  if (!browser) {
    log().warn("mdns: Avahi cannot browse {}: {}", type, avahi_strerror(avahi_client_errno(st.client)));
    return std::vector<Found>{};
  }
  const auto deadline = Clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || st.failed || (st.all_for_now && st.pending == 0)) break;
    if (avahi_simple_poll_iterate(poll.get(), static_cast<int>(std::min<long long>(left, 100))) != 0) break;
  }
  for (auto& f : st.found)  // IPv4 first
    std::stable_partition(f.addresses.begin(), f.addresses.end(),
                          [](const std::string& a) { return a.find(':') == std::string::npos; });
  return std::move(st.found);
}

}  // namespace clawbot::discovery::avahi

#else  // no libavahi-client in this build

namespace clawbot::discovery::avahi {

bool available(std::string* why) {
  if (why) *why = "this build has no Avahi support";
  return false;
}

std::unique_ptr<Advertiser> start_publisher(const ServiceInfo&, int, std::string* why) {
  available(why);
  return nullptr;
}

std::optional<std::vector<Found>> browse(std::chrono::milliseconds, std::string_view) {
  return std::nullopt;
}

}  // namespace clawbot::discovery::avahi

#endif
