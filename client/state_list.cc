// StateList: the lazily paged range of Client::List (declared in client/client.h).

#include "client/client.h"

namespace tally {

StateList::Iterator StateList::begin() {
  if (!started_) {
    started_ = true;
    FetchUntilNonEmpty();
  }
  return Iterator(this);
}

void StateList::Advance() {
  if (done_) return;
  if (++index_ < page_.states_size()) return;
  if (page_.next_page_token().empty()) {
    done_ = true;
    return;
  }
  request_.set_page_token(page_.next_page_token());
  FetchUntilNonEmpty();
}

void StateList::FetchUntilNonEmpty() {
  // A page may come back empty with a token to continue (the router's merge can stop at its
  // page budget before finding a match); keep going until a state or the end.
  for (;;) {
    absl::StatusOr<v1::ListStateResponse> page =
        client_->ListPage(request_, CallOptions{.timeout = timeout_});
    ++pages_fetched_;
    if (!page.ok()) {
      status_ = page.status();
      done_ = true;
      return;
    }
    page_ = *std::move(page);
    index_ = 0;
    if (page_.states_size() > 0) return;
    if (page_.next_page_token().empty()) {
      done_ = true;
      return;
    }
    request_.set_page_token(page_.next_page_token());
  }
}

}  // namespace tally
